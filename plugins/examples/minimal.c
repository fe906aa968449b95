/* The smallest useful plugin: says hello per worker and logs every client.
 * Build: see Makefile. Install: copy the .so into plugin-directory. */
#include <mailerq.h>

/* Required: the API version this plugin was built against. */
MQ_EXPORT int mq_version(void) { return MQ_API_VERSION; }

MQ_EXPORT void mq_context_initialize(MQ_Context *context) {
    MQ_log(context, MQ_LOG_INFO, "minimal plugin ready on this worker");
}

/* Returning false: this plugin does not take control; the server goes on. */
MQ_EXPORT bool mq_smtp_in_connect(MQ_Context *context, MQ_Connection *connection) {
    (void)connection;
    MQ_log(context, MQ_LOG_INFO, "minimal plugin: a client connected");
    return false;
}
