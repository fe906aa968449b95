/* Shared by the test plugins: append one line to LOG_PATH (O_APPEND, so
 * lines from several worker threads do not interleave). */
#ifndef LOG_LINE_H
#define LOG_LINE_H
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static void log_line(const char *line) {
    int fd = open(LOG_PATH, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        if (write(fd, line, strlen(line)) < 0) { /* a test plugin has nowhere to report this */ }
        close(fd);
    }
}
#endif
