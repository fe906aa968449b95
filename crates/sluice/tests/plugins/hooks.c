/* Test plugin for the inbound hooks and the control hand-off. Built twice:
 * NAME="10-first" with FIRST defined (does what the recipient's local part
 * asks), and NAME="20-second" (reports that it ran). LOG_PATH gets one line
 * per connection close. */
#define _POSIX_C_SOURCE 200809L
#include <mailerq.h>
#include "log_line.h"
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

static int starts(const char *s, const char *prefix) { return s && strncmp(s, prefix, strlen(prefix)) == 0; }

MQ_EXPORT int mq_version(void) { return MQ_API_VERSION; }

/* Connection data per plugin: our own name, checked at close. */
MQ_EXPORT bool mq_smtp_in_connect(MQ_Context *context, MQ_Connection *connection) {
    (void)context;
    MQ_setConnectionData(connection, strdup(NAME));
#ifdef BLOCK
    MQ_respond(connection, 554, "5.7.1 blocked by plugin");
#endif
    return false;
}

MQ_EXPORT bool mq_smtp_in_secure(MQ_Context *context, MQ_Connection *connection) {
    char line[64];
    (void)context;
    snprintf(line, sizeof line, "secure %s %s\n", NAME, MQ_secure(connection) ? "yes" : "NO");
    log_line(line);
    return false;
}

MQ_EXPORT bool mq_smtp_in_close(MQ_Context *context, MQ_Connection *connection) {
    char line[128];
    char *mine = (char *)MQ_connectionData(connection);
    (void)context;
    snprintf(line, sizeof line, "close %s %s\n", NAME, mine && strcmp(mine, NAME) == 0 ? "own-data" : "WRONG-DATA");
    log_line(line);
    free(mine);
    return false;
}

#ifdef FIRST
static void *later(void *arg) {
    struct timespec ts = {0, 100 * 1000 * 1000};
    MQ_Connection *connection = (MQ_Connection *)arg;
    nanosleep(&ts, NULL);
    MQ_respond(connection, 250, "2.1.5 answered from another thread");
    MQ_continue(connection);
    return NULL;
}

static int retries;
static int timer_retries;

static void *complete_later(void *arg) {
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    MQ_complete((MQ_Connection *)arg);
    return NULL;
}

static void retry_from_timer(void *arg) { MQ_retry((MQ_Connection *)arg); }

MQ_EXPORT bool mq_smtp_in_mailfrom(MQ_Context *context, MQ_Connection *connection, MQ_Address *envelope) {
    (void)context;
    if (starts(MQ_email(envelope), "greet@")) {
        /* Raw bytes, written before the host's own reply. */
        const char *text = "250-plugin was here\r\n";
        MQ_send(connection, text, strlen(text));
    }
    return false;
}

MQ_EXPORT bool mq_smtp_in_rcptto(MQ_Context *context, MQ_Connection *connection, MQ_Address *recipient) {
    const char *email = MQ_email(recipient);
    pthread_t thread;
    char text[64];
    (void)context;
    if (starts(email, "reject@")) {
        MQ_respond(connection, 550, "5.1.1 no such user");
        return false;
    }
    if (starts(email, "sync-continue@")) { MQ_continue(connection); return true; }
    if (starts(email, "sync-complete@")) { MQ_complete(connection); return true; }
    if (starts(email, "thread@")) {
        pthread_create(&thread, NULL, later, connection);
        pthread_detach(thread);
        return true;
    }
    if (starts(email, "retry@")) {
        if (retries < 3) { retries++; MQ_retry(connection); return true; }
        snprintf(text, sizeof text, "2.1.5 retried %d times", retries);
        retries = 0;
        MQ_respond(connection, 250, text);
        return false;
    }
    if (starts(email, "thread-complete@")) {
        /* MQ_complete from another thread: 20-second is skipped. */
        pthread_create(&thread, NULL, complete_later, connection);
        pthread_detach(thread);
        return true;
    }
    if (starts(email, "timer-retry@")) {
        /* MQ_retry from a timer, twice; then let it through. */
        if (timer_retries < 2) { timer_retries++; MQ_startTimer(context, 0.02f, retry_from_timer, connection); return true; }
        snprintf(text, sizeof text, "2.1.5 retried from a timer %d times", timer_retries);
        timer_retries = 0;
        MQ_respond(connection, 250, text);
        return false;
    }
    if (starts(email, "double@")) { MQ_continue(connection); MQ_continue(connection); return true; }
    if (starts(email, "fd@")) {
        struct sockaddr_in local;
        socklen_t len = sizeof local;
        if (getsockname(MQ_fileDescriptor(connection), (struct sockaddr *)&local, &len) == 0) {
            snprintf(text, sizeof text, "2.1.5 local port %d", ntohs(local.sin_port));
            MQ_respond(connection, 250, text);
        }
        return false;
    }
    if (starts(email, "auth@")) {
        MQ_respond(connection, 250, MQ_authenticated(connection) ? "2.1.5 authenticated yes" : "2.1.5 authenticated no");
        return false;
    }
    if (starts(email, "hang@")) return true; /* never hands back: the watchdog fires */
    if (starts(email, "stray@")) { MQ_continue(connection); return false; }
    return false;
}

MQ_EXPORT bool mq_smtp_in_data(MQ_Context *context, MQ_Connection *connection, const char *mime, size_t size) {
    (void)context;
    if (size >= 13 && memcmp(mime, "X-Reject: yes", 13) == 0) MQ_respond(connection, 550, "5.7.1 rejected by plugin");
    return false;
}

MQ_EXPORT bool mq_smtp_in_authenticate(MQ_Context *context, MQ_Connection *connection, const char *login,
                                       size_t loginsize, const char *password, size_t passwordsize) {
    (void)context;
    MQ_setAuthenticated(connection, loginsize == 11 && memcmp(login, "plugin-user", 11) == 0 && passwordsize == 6 &&
                                        memcmp(password, "secret", 6) == 0);
    return false;
}
#else
MQ_EXPORT bool mq_smtp_in_rcptto(MQ_Context *context, MQ_Connection *connection, MQ_Address *recipient) {
    const char *email = MQ_email(recipient);
    (void)context;
    if (starts(email, "sync-continue@")) MQ_respond(connection, 250, "2.1.5 second plugin ran");
    if (starts(email, "sync-complete@")) MQ_respond(connection, 550, "5.0.0 second plugin should have been skipped");
    return false;
}
#endif
