/* A plugin that implements every inbound hook and does nothing: for measuring
 * what dispatching costs. Uses no MQ_* function, so a benchmark binary can
 * load it in-process. */
#include <mailerq.h>

MQ_EXPORT int mq_version(void) { return MQ_API_VERSION; }
MQ_EXPORT bool mq_smtp_in_connect(MQ_Context *c, MQ_Connection *n) { (void)c; (void)n; return false; }
MQ_EXPORT bool mq_smtp_in_secure(MQ_Context *c, MQ_Connection *n) { (void)c; (void)n; return false; }
MQ_EXPORT bool mq_smtp_in_authenticate(MQ_Context *c, MQ_Connection *n, const char *l, size_t ls, const char *p, size_t ps) {
    (void)c; (void)n; (void)l; (void)ls; (void)p; (void)ps; return false;
}
MQ_EXPORT bool mq_smtp_in_mailfrom(MQ_Context *c, MQ_Connection *n, MQ_Address *a) { (void)c; (void)n; (void)a; return false; }
MQ_EXPORT bool mq_smtp_in_rcptto(MQ_Context *c, MQ_Connection *n, MQ_Address *a) { (void)c; (void)n; (void)a; return false; }
MQ_EXPORT bool mq_smtp_in_data(MQ_Context *c, MQ_Connection *n, const char *m, size_t s) { (void)c; (void)n; (void)m; (void)s; return false; }
MQ_EXPORT bool mq_smtp_in_message(MQ_Context *c, MQ_Connection *n, MQ_Message *m) { (void)c; (void)n; (void)m; return false; }
MQ_EXPORT bool mq_smtp_in_close(MQ_Context *c, MQ_Connection *n) { (void)c; (void)n; return false; }
