/* Test plugin that blocks its worker thread in mq_smtp_in_connect for
 * SLEEP_MS milliseconds, as a plugin doing synchronous I/O would. */
#define _POSIX_C_SOURCE 200809L
#include <mailerq.h>
#include <time.h>

MQ_EXPORT int mq_version(void) { return MQ_API_VERSION; }

MQ_EXPORT bool mq_smtp_in_connect(MQ_Context *context, MQ_Connection *connection) {
    struct timespec t = {SLEEP_MS / 1000, (SLEEP_MS % 1000) * 1000000L};
    (void)context;
    (void)connection;
    nanosleep(&t, NULL);
    return false;
}
