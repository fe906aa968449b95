/* Adds a header to every message before it is queued, by replacing the MIME
 * in mq_smtp_in_message (the inbound setters change what is queued). */
#include <mailerq.h>
#include <stdlib.h>
#include <string.h>

static const char header[] = "X-Stamped-By: sluice-example\r\n";

MQ_EXPORT int mq_version(void) { return MQ_API_VERSION; }

MQ_EXPORT bool mq_smtp_in_message(MQ_Context *context, MQ_Connection *connection, MQ_Message *message) {
    const char *mime = MQ_mime(message);
    size_t hlen = sizeof header - 1, mlen = mime ? strlen(mime) : 0;
    char *stamped = (char *)malloc(hlen + mlen);
    (void)context;
    (void)connection;
    if (!stamped) return false;
    memcpy(stamped, header, hlen);
    if (mlen) memcpy(stamped + hlen, mime, mlen);
    MQ_setMime(message, stamped, hlen + mlen); /* the host copies it */
    free(stamped);
    return false;
}
