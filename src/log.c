/* log.c - the operator log (see log.h).
 *
 * Each line is formatted into a stack buffer first and written with one fwrite under the
 * logger's mutex, so a line is never torn by another thread and a slow stderr never holds the
 * lock while formatting. Lines longer than the buffer are cut and end in "...": the log must
 * not grow without bound because a caller passed a long value.
 */
#include "log.h"

#include <string.h>
#include <time.h>

#define LOG_LINE_MAX 2048

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_init(struct logger *lg, FILE *out, int min_level)
{
    lg->out = out != NULL ? out : stderr;
    lg->min_level = min_level;
    if (pthread_mutex_init(&lg->mu, NULL) != 0)
        return -1;
    return 0;
}

void log_release(struct logger *lg)
{
    if (lg == NULL)
        return;
    pthread_mutex_destroy(&lg->mu);
}

int log_level_parse(const char *s)
{
    size_t i;

    if (s == NULL)
        return -1;
    for (i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
        if (strcmp(s, level_names[i]) == 0)
            return (int)i;
    }
    return -1;
}

/* "2026-11-23T01:02:03.456Z" into out (at least 32 bytes). */
static void log_format_now(char *out, size_t n)
{
    struct timespec ts;
    struct tm tm;
    char base[24];

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, n, "%s.%03ldZ", base, ts.tv_nsec / 1000000L);
}

void log_vmsg(struct logger *lg, int level, const char *fmt, va_list ap)
{
    char line[LOG_LINE_MAX];
    char ts[40];
    const char *lname;
    size_t len;
    int w;

    if (lg == NULL || level < lg->min_level)
        return;
    lname = (level >= 0 && level <= STW_LOG_ERROR) ? level_names[level] : "info";
    log_format_now(ts, sizeof ts);
    w = snprintf(line, sizeof line, "ts=%s level=%s ", ts, lname);
    if (w < 0)
        return;
    len = (size_t)w;
    w = vsnprintf(line + len, sizeof line - len, fmt, ap);
    if (w < 0)
        return;
    if ((size_t)w >= sizeof line - len) {
        /* Cut: keep room for "...\n" and the NUL. */
        len = sizeof line - 5;
        memcpy(line + len, "...", 3);
        len += 3;
    } else {
        len += (size_t)w;
    }
    line[len++] = '\n';

    pthread_mutex_lock(&lg->mu);
    fwrite(line, 1, len, lg->out);
    fflush(lg->out);
    pthread_mutex_unlock(&lg->mu);
}

void log_msg(struct logger *lg, int level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(lg, level, fmt, ap);
    va_end(ap);
}

char *log_quote(char *dst, size_t n, const char *s)
{
    size_t o = 0;
    const size_t reserve = 5; /* `..."` plus the NUL */

    if (n < reserve + 2) {
        dst[0] = '\0';
        return dst;
    }
    dst[o++] = '"';
    for (; s != NULL && *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        size_t need = (c == '"' || c == '\\') ? 2 : 1;

        if (o + need + reserve > n) {
            memcpy(dst + o, "...", 3);
            o += 3;
            break;
        }
        if (need == 2)
            dst[o++] = '\\';
        dst[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    dst[o++] = '"';
    dst[o] = '\0';
    return dst;
}
