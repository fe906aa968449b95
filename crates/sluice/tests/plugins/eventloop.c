/* Test plugin for the event loop: timers (fire, stop, reset), a pipe watched
 * with MQ_ioWatch and unwatched from its own callback, and a hand-off made
 * from a timer. Every callback checks it runs on its context's thread. */
#define _POSIX_C_SOURCE 200809L
#include <mailerq.h>
#include "log_line.h"
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct worker {
    pthread_t thread;
    int pipe[2];
    MQ_IOWatcher *watcher;
};

static void record(const char *what, struct worker *w) {
    char line[128];
    snprintf(line, sizeof line, "%s %s\n", what, pthread_equal(w->thread, pthread_self()) ? "same-thread" : "OTHER-THREAD");
    log_line(line);
}

static void fired(void *data) { record("timer-fired", (struct worker *)data); }
static void never(void *data) { record("stopped-timer-FIRED", (struct worker *)data); }
static void reset_fired(void *data) { record("reset-fired", (struct worker *)data); }

static void readable(MQ_IOWatcher *watcher, int fd, int events, void *data) {
    struct worker *w = (struct worker *)data;
    char buf[16];
    ssize_t n = read(fd, buf, sizeof buf);
    (void)events;
    record(n == 1 && buf[0] == 'x' ? "io-read" : "io-WRONG", w);
    MQ_ioUnwatch(watcher); /* from inside its own callback */
    w->watcher = NULL;
}

static void poke(void *data) {
    struct worker *w = (struct worker *)data;
    if (write(w->pipe[1], "x", 1) != 1) record("poke-failed", w);
}

MQ_EXPORT int mq_version(void) { return MQ_API_VERSION; }

MQ_EXPORT void mq_context_initialize(MQ_Context *context) {
    struct worker *w = (struct worker *)calloc(1, sizeof *w);
    MQ_Timer *stopped, *later;
    w->thread = pthread_self();
    MQ_setContextData(context, w);
    if (pipe(w->pipe) != 0) return;
    MQ_startTimer(context, 0.05f, fired, w);
    stopped = MQ_startTimer(context, 0.05f, never, w);
    MQ_stopTimer(stopped);
    later = MQ_startTimer(context, 30.0f, reset_fired, w);
    MQ_resetTimer(later, 0.2f);
    w->watcher = MQ_ioWatch(context, w->pipe[0], MQ_READ, readable, w);
    MQ_startTimer(context, 0.1f, poke, w);
}

MQ_EXPORT void mq_context_cleanup(MQ_Context *context) {
    struct worker *w = (struct worker *)MQ_contextData(context);
    if (w->watcher) MQ_ioUnwatch(w->watcher);
    close(w->pipe[0]);
    close(w->pipe[1]);
    free(w);
}

/* A hand-off from a timer callback. */
static void answer(void *data) {
    MQ_Connection *connection = (MQ_Connection *)data;
    MQ_respond(connection, 250, "2.1.5 answered from a timer");
    MQ_continue(connection);
}

MQ_EXPORT bool mq_smtp_in_rcptto(MQ_Context *context, MQ_Connection *connection, MQ_Address *recipient) {
    const char *email = MQ_email(recipient);
    if (email && strncmp(email, "timer@", 6) == 0) {
        MQ_startTimer(context, 0.1f, answer, connection);
        return true;
    }
    return false;
}
