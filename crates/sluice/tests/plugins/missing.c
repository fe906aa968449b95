/* Test plugin that needs a function the host does not have: must fail at load. */
#include <mailerq.h>
void MQ_no_such_function(void);
MQ_EXPORT int mq_version(void) { return MQ_API_VERSION; }
MQ_EXPORT void mq_initialize(void) { MQ_no_such_function(); }
