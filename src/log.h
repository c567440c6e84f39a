/* log.h - the operator log: one `key=value` line per event, on stderr by default.
 *
 * Only the edges log (http.c, main.c, service.c, ingest/); the core returns stw_error instead.
 * A line looks like
 *     ts=2026-11-23T01:02:03.456Z level=info event=http method=POST route=/v1/query status=200 ...
 * The log is for operators, the audit trail records who saw what: callers must never pass chunk
 * text, vectors, API keys, request bodies or error messages that could echo them. Log ids,
 * codes and counts. Values that may hold spaces or quotes go through log_quote().
 */
#ifndef STW_LOG_H
#define STW_LOG_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

enum log_level { STW_LOG_DEBUG = 0, STW_LOG_INFO, STW_LOG_WARN, STW_LOG_ERROR };

/* Caller-allocated; set up with log_init(), torn down with log_release().
 * Thread: log_msg/log_vmsg may be called from any thread; `mu` serialises whole lines so that
 * lines from different threads never interleave. `out` and `min_level` are fixed after init. */
struct logger {
    FILE *out;          /* borrowed: not closed by log_release */
    int min_level;      /* enum log_level; lines below it are dropped */
    pthread_mutex_t mu; /* guards writes to out */
};

/* out NULL means stderr. Returns 0, or -1 if the mutex could not be created. */
int log_init(struct logger *lg, FILE *out, int min_level);
/* Destroys the mutex. NULL is a no-op. Not concurrent with log_msg. */
void log_release(struct logger *lg);

/* Writes "ts=... level=... " followed by the formatted fields and a newline.
 * fmt holds the rest of the line as key=value pairs, without a trailing newline.
 * Thread: any. NULL lg is a no-op. */
void log_msg(struct logger *lg, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vmsg(struct logger *lg, int level, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* "debug", "info", "warn", "error" -> enum log_level; -1 if unknown. */
int log_level_parse(const char *s);

/* Writes s into dst (size n > 0) as a double-quoted log value: '"' and '\' are escaped,
 * control characters become '?', and the value is cut (ending in "...") to fit.
 * Returns dst. NULL s gives "". */
char *log_quote(char *dst, size_t n, const char *s);

#endif
