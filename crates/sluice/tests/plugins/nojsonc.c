/* Test plugin calling MQ_json without json-c in the process: it gets NULL. */
#include <mailerq.h>

MQ_EXPORT int mq_version(void) { return MQ_API_VERSION; }

MQ_EXPORT bool mq_smtp_in_message(MQ_Context *context, MQ_Connection *connection, MQ_Message *message) {
    (void)context;
    (void)connection;
    if (MQ_json(message) == NULL) MQ_setMime(message, "X-Json: null\r\n\r\n", 16);
    return false;
}
