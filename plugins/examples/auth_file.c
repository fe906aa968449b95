/* Authentication against a file of `login:password` lines (path in the
 * environment variable EXAMPLE_AUTH_FILE, default /etc/sluice/users.txt).
 * Shows the asynchronous hand-off: the hook returns true at once and the
 * answer comes from a timer on the worker's event loop, as a real plugin
 * would answer from a database reply. (A real deployment stores hashes, not
 * passwords; this example keeps to the API.) */
#define _POSIX_C_SOURCE 200809L
#include <mailerq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pending {
    MQ_Connection *connection;
    bool ok;
};

static bool listed(const char *login, size_t loginsize, const char *password, size_t passwordsize) {
    const char *path = getenv("EXAMPLE_AUTH_FILE");
    char line[512];
    bool found = false;
    FILE *f = fopen(path ? path : "/etc/sluice/users.txt", "r");
    if (!f) return false;
    while (!found && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        size_t end = strcspn(line, "\r\n");
        line[end] = '\0';
        if (!colon) continue;
        found = (size_t)(colon - line) == loginsize && memcmp(line, login, loginsize) == 0 &&
                strlen(colon + 1) == passwordsize && memcmp(colon + 1, password, passwordsize) == 0;
    }
    fclose(f);
    return found;
}

/* Runs on the worker, a moment after the hook returned true. */
static void answer(void *data) {
    struct pending *p = (struct pending *)data;
    MQ_setAuthenticated(p->connection, p->ok);
    MQ_continue(p->connection);
    free(p);
}

MQ_EXPORT int mq_version(void) { return MQ_API_VERSION; }

MQ_EXPORT bool mq_smtp_in_authenticate(MQ_Context *context, MQ_Connection *connection, const char *login,
                                       size_t loginsize, const char *password, size_t passwordsize) {
    struct pending *p = (struct pending *)malloc(sizeof *p);
    p->connection = connection;
    p->ok = listed(login, loginsize, password, passwordsize);
    MQ_startTimer(context, 0.01f, answer, p);
    return true; /* we hold control until answer() calls MQ_continue */
}
