/*
 * mailerq.h: the plugin API of Sluice, compatible with MailerQ's C plugin API.
 *
 * A plugin is a shared object (.so) in `plugin-directory`. It must export
 * mq_version() returning MQ_API_VERSION; every other function it exports from
 * the list under "Functions a plugin may export" is called at its point.
 * Build with:  cc -shared -fPIC -fvisibility=hidden -I/path/to/include x.c
 * and mark the exported functions MQ_EXPORT.
 *
 * The contract is spec/plugin-api.md; docs/plugins.md is the author's guide.
 */
#ifndef MAILERQ_H
#define MAILERQ_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The API version a plugin is built against; mq_version() returns it. */
#define MQ_API_VERSION 1

/* Mark the functions a plugin exports, so -fvisibility=hidden can be used. */
#if defined(__GNUC__) || defined(__clang__)
#define MQ_EXPORT __attribute__((visibility("default")))
#else
#define MQ_EXPORT
#endif

/* Event flags for MQ_ioWatch (the same values as libev's EV_READ / EV_WRITE). */
#define MQ_READ 1
#define MQ_WRITE 2

/* Opaque handles. */
typedef struct MQ_Context MQ_Context;
typedef struct MQ_Connection MQ_Connection;
typedef struct MQ_Message MQ_Message;
typedef struct MQ_Address MQ_Address;
typedef struct MQ_IOWatcher MQ_IOWatcher;
typedef struct MQ_Timer MQ_Timer;
typedef MQ_Address MQ_Envelope;

/* Types from libraries a plugin may link itself (json-c, libev). */
struct json_object;
struct ev_loop;

/* ------------------------------------------------------------------------
 * Functions a plugin may export (the host calls them). Only mq_version is
 * required. Declared here so a plugin's definitions are checked against them.
 * ---------------------------------------------------------------------- */
MQ_EXPORT int mq_version(void);
MQ_EXPORT void mq_initialize(void);
MQ_EXPORT void mq_cleanup(void);
MQ_EXPORT void mq_context_initialize(MQ_Context *context);
MQ_EXPORT void mq_context_cleanup(MQ_Context *context);
MQ_EXPORT bool mq_smtp_in_connect(MQ_Context *context, MQ_Connection *connection);
MQ_EXPORT bool mq_smtp_in_secure(MQ_Context *context, MQ_Connection *connection);
MQ_EXPORT bool mq_smtp_in_authenticate(MQ_Context *context, MQ_Connection *connection, const char *login,
                                       size_t loginsize, const char *passwd, size_t passwdsize);
MQ_EXPORT bool mq_smtp_in_mailfrom(MQ_Context *context, MQ_Connection *connection, MQ_Address *envelope);
MQ_EXPORT bool mq_smtp_in_rcptto(MQ_Context *context, MQ_Connection *connection, MQ_Address *recipient);
MQ_EXPORT bool mq_smtp_in_data(MQ_Context *context, MQ_Connection *connection, const char *mime, size_t size);
MQ_EXPORT bool mq_smtp_in_message(MQ_Context *context, MQ_Connection *connection, MQ_Message *message);
MQ_EXPORT bool mq_smtp_in_close(MQ_Context *context, MQ_Connection *connection);
MQ_EXPORT bool mq_smtp_out_data(MQ_Context *context, MQ_Connection *connection, MQ_Message *message);
MQ_EXPORT bool mq_smtp_out_sent(MQ_Context *context, MQ_Connection *connection, MQ_Message *message);

/* ------------------------------------------------------------------------
 * Functions the host exports (a plugin calls them).
 * ---------------------------------------------------------------------- */

/* Context and event loop: an MQ_Context belongs to one worker thread. */
void *MQ_contextData(MQ_Context *context);
void MQ_setContextData(MQ_Context *context, void *data);
MQ_IOWatcher *MQ_ioWatch(MQ_Context *context, int fd, int events,
                         void (*callback)(MQ_IOWatcher *watcher, int fd, int events, void *data), void *data);
void MQ_ioUnwatch(MQ_IOWatcher *watcher);
MQ_Timer *MQ_startTimer(MQ_Context *context, float seconds, void (*callback)(void *data), void *data);
void MQ_stopTimer(MQ_Timer *timer);
void MQ_resetTimer(MQ_Timer *timer, float seconds);
struct ev_loop *MQ_ev(MQ_Context *context);

/* Connection. */
int MQ_fileDescriptor(MQ_Connection *connection);
size_t MQ_send(MQ_Connection *connection, const void *buffer, size_t size);
bool MQ_authenticated(MQ_Connection *connection);
void MQ_setAuthenticated(MQ_Connection *connection, bool authenticated);
bool MQ_secure(MQ_Connection *connection);
void *MQ_connectionData(MQ_Connection *connection);
void MQ_setConnectionData(MQ_Connection *connection, void *data);

/* Control hand-off after a hook returned true. */
void MQ_continue(MQ_Connection *connection);
void MQ_complete(MQ_Connection *connection);
void MQ_retry(MQ_Connection *connection);

/* Message and address. */
struct json_object *MQ_json(MQ_Message *message);
MQ_Address *MQ_envelope(MQ_Message *message);
void MQ_setEnvelope(MQ_Message *message, const char *address, size_t size);
MQ_Address *MQ_recipient(MQ_Message *message);
void MQ_setRecipient(MQ_Message *message, const char *address, size_t size);
const char *MQ_mime(MQ_Message *message);
void MQ_setMime(MQ_Message *message, const char *mime, size_t size);
bool MQ_local(MQ_Message *message);
void MQ_setLocal(MQ_Message *message, bool local);
const char *MQ_email(MQ_Address *address);

/* Other spellings used in MailerQ's documentation; the same functions.
 * The host also exports the symbol MQ_Envelope (a function in some MailerQ
 * documentation); it cannot be declared here because MQ_Envelope is the
 * address typedef above. */
void *MQ_ContextData(MQ_Context *context);
struct json_object *MQ_Json(MQ_Message *message);
const char *MQ_Mime(MQ_Message *message);
MQ_IOWatcher *MQ_IOWatch(MQ_Context *context, int fd, int events,
                         void (*callback)(MQ_IOWatcher *watcher, int fd, int events, void *data), void *data);
void MQ_IOUnwatch(MQ_IOWatcher *watcher);

/* ------------------------------------------------------------------------
 * Beyond MailerQ.
 * ---------------------------------------------------------------------- */
#define MQ_EXTENSIONS 1

/* Replace the reply the host would give for this inbound step (e.g. 550). */
void MQ_respond(MQ_Connection *connection, int code, const char *text);

/* Log levels for MQ_log. */
#define MQ_LOG_ERROR 0
#define MQ_LOG_WARNING 1
#define MQ_LOG_INFO 2
#define MQ_LOG_DEBUG 3

/* Write to the host's log with the plugin's name attached. */
void MQ_log(MQ_Context *context, int level, const char *text);

#ifdef __cplusplus
}
#endif

#endif /* MAILERQ_H */
