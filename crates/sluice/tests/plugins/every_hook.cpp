// Test plugin in C++ declaring every hook: the header must be C++ clean and
// `plugin check` must list them all.
#include <mailerq.h>

extern "C" {
MQ_EXPORT int mq_version(void) { return MQ_API_VERSION; }
MQ_EXPORT void mq_initialize(void) {}
MQ_EXPORT void mq_cleanup(void) {}
MQ_EXPORT void mq_context_initialize(MQ_Context *) {}
MQ_EXPORT void mq_context_cleanup(MQ_Context *) {}
MQ_EXPORT bool mq_smtp_in_connect(MQ_Context *, MQ_Connection *) { return false; }
MQ_EXPORT bool mq_smtp_in_secure(MQ_Context *, MQ_Connection *) { return false; }
MQ_EXPORT bool mq_smtp_in_authenticate(MQ_Context *, MQ_Connection *, const char *, size_t, const char *, size_t) { return false; }
MQ_EXPORT bool mq_smtp_in_mailfrom(MQ_Context *, MQ_Connection *, MQ_Address *) { return false; }
MQ_EXPORT bool mq_smtp_in_rcptto(MQ_Context *, MQ_Connection *, MQ_Address *) { return false; }
MQ_EXPORT bool mq_smtp_in_data(MQ_Context *, MQ_Connection *, const char *, size_t) { return false; }
MQ_EXPORT bool mq_smtp_in_message(MQ_Context *, MQ_Connection *, MQ_Message *) { return false; }
MQ_EXPORT bool mq_smtp_in_close(MQ_Context *, MQ_Connection *) { return false; }
MQ_EXPORT bool mq_smtp_out_data(MQ_Context *, MQ_Connection *, MQ_Message *) { return false; }
MQ_EXPORT bool mq_smtp_out_sent(MQ_Context *, MQ_Connection *, MQ_Message *) { return false; }
}
