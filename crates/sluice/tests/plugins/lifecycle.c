/* Test plugin: records its lifecycle calls to LOG_PATH, one line each.
 * Built several times with different NAME values to check load order. */
#define _POSIX_C_SOURCE 200809L /* strdup under -std=c99 */
#include <mailerq.h>
#include "log_line.h"
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void record(const char *what, const char *extra) {
    char line[256];
    snprintf(line, sizeof line, "%s %s %s\n", what, NAME, extra ? extra : "");
    log_line(line);
}

MQ_EXPORT int mq_version(void) { return MQ_API_VERSION; }
MQ_EXPORT void mq_initialize(void) { record("init", NULL); }
MQ_EXPORT void mq_cleanup(void) { record("cleanup", NULL); }

MQ_EXPORT void mq_context_initialize(MQ_Context *context) {
    char thread[64];
    snprintf(thread, sizeof thread, "%lu", (unsigned long)pthread_self());
    /* Per-plugin context data: our own name, checked again at cleanup. */
    MQ_setContextData(context, strdup(NAME));
    record("ctx-init", thread);
    MQ_log(context, MQ_LOG_INFO, "hello from " NAME);
}

MQ_EXPORT void mq_context_cleanup(MQ_Context *context) {
    char *mine = (char *)MQ_contextData(context);
    char extra[96];
    snprintf(extra, sizeof extra, "%lu %s", (unsigned long)pthread_self(),
             mine && strcmp(mine, NAME) == 0 && MQ_ContextData(context) == mine ? "own-data" : "WRONG-DATA");
    record("ctx-cleanup", extra);
    free(mine);
}
