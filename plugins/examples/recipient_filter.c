/* Rejects recipients in the domains listed (comma separated) in the
 * environment variable EXAMPLE_REJECT_DOMAINS, with `550 5.1.1`. The other
 * recipients of the same transaction are unaffected. */
#define _POSIX_C_SOURCE 200809L
#include <mailerq.h>
#include <stdlib.h>
#include <string.h>

static bool rejected(const char *email) {
    const char *list = getenv("EXAMPLE_REJECT_DOMAINS");
    const char *at = email ? strrchr(email, '@') : NULL;
    size_t n;
    if (!list || !at) return false;
    at++;
    n = strlen(at);
    while (*list) {
        size_t len = strcspn(list, ",");
        if (len == n && strncmp(list, at, n) == 0) return true;
        list += len + (list[len] == ',');
    }
    return false;
}

MQ_EXPORT int mq_version(void) { return MQ_API_VERSION; }

MQ_EXPORT bool mq_smtp_in_rcptto(MQ_Context *context, MQ_Connection *connection, MQ_Address *recipient) {
    (void)context;
    if (rejected(MQ_email(recipient))) MQ_respond(connection, 550, "5.1.1 recipient rejected by policy");
    return false;
}
