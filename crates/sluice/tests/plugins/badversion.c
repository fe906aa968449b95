/* Test plugin built for another API version. */
#include <mailerq.h>
MQ_EXPORT int mq_version(void) { return 99; }
