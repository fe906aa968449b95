/* Test plugin for mq_smtp_in_message: changes each recipient's copy through
 * the inbound setters, depending on the recipient's local part. */
#define _POSIX_C_SOURCE 200809L
#include <mailerq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int starts(const char *s, const char *prefix) { return s && strncmp(s, prefix, strlen(prefix)) == 0; }

MQ_EXPORT int mq_version(void) { return MQ_API_VERSION; }

MQ_EXPORT bool mq_smtp_in_message(MQ_Context *context, MQ_Connection *connection, MQ_Message *message) {
    const char *recipient = MQ_email(MQ_recipient(message));
    MQ_Address *envelope = MQ_envelope(message);
    const char *mime = MQ_mime(message);
    const char *stamp = envelope && MQ_email(envelope) ? "X-Stamped: yes\r\n" : "X-Stamped: null-envelope\r\n";
    size_t size = strlen(stamp) + (mime ? strlen(mime) : 0);
    char *stamped = (char *)malloc(size + 1);
    (void)context;
    if (starts(recipient, "null@")) {
        /* NULL changes nothing: the copy is queued as it was. */
        MQ_setRecipient(message, NULL, 9);
        MQ_setEnvelope(message, NULL, 9);
        MQ_setMime(message, NULL, 9);
        free(stamped);
        return false;
    }
    if (starts(recipient, "drop@")) {
        MQ_respond(connection, 550, "5.7.1 dropped by plugin");
        free(stamped);
        return false;
    }
    /* Header stamping: the new MIME is what gets queued. */
    snprintf(stamped, size + 1, "%s%s", stamp, mime ? mime : "");
    MQ_setMime(message, stamped, size);
    free(stamped);
    if (starts(recipient, "local@")) MQ_setLocal(message, true);
    if (starts(recipient, "rewrite@")) {
        MQ_setRecipient(message, "rewritten@example.com", 21);
        MQ_setEnvelope(message, "bounces@example.net", 19);
    }
    return false;
}
