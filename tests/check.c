/* check.c - counters and failure reports behind tests/check.h. */
#include "check.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

long check_count;
long check_failures;

int check_bool(const char *file, int line, const char *expr, int ok)
{
    check_count++;
    if (ok)
        return 1;
    check_failures++;
    fprintf(stderr, "%s:%d: CHECK(%s) failed\n", file, line, expr);
    return 0;
}

int check_boolf(const char *file, int line, const char *expr, int ok, const char *fmt, ...)
{
    va_list ap;

    check_count++;
    if (ok)
        return 1;
    check_failures++;
    fprintf(stderr, "%s:%d: CHECK(%s) failed: ", file, line, expr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 0;
}

int check_eq_int(const char *file, int line, const char *ea, const char *eb, long long a,
                 long long b)
{
    check_count++;
    if (a == b)
        return 1;
    check_failures++;
    fprintf(stderr, "%s:%d: CHECK_EQ_INT(%s, %s) failed: %lld != %lld\n", file, line, ea, eb, a, b);
    return 0;
}

int check_eq_str(const char *file, int line, const char *ea, const char *eb, const char *a,
                 const char *b)
{
    check_count++;
    if (a != NULL && b != NULL && strcmp(a, b) == 0)
        return 1;
    check_failures++;
    fprintf(stderr, "%s:%d: CHECK_EQ_STR(%s, %s) failed: %s%s%s != %s%s%s\n", file, line, ea, eb,
            a ? "\"" : "", a ? a : "(null)", a ? "\"" : "", b ? "\"" : "", b ? b : "(null)",
            b ? "\"" : "");
    return 0;
}

int check_near(const char *file, int line, const char *ea, const char *eb, double a, double b,
               double eps)
{
    check_count++;
    if (fabs(a - b) <= eps) /* false for NaN, so a NaN never passes */
        return 1;
    check_failures++;
    fprintf(stderr, "%s:%d: CHECK_NEAR(%s, %s) failed: %.9g vs %.9g (|diff| %.3g > %.3g)\n", file,
            line, ea, eb, a, b, fabs(a - b), eps);
    return 0;
}

int check_failf(const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    check_count++;
    check_failures++;
    fprintf(stderr, "%s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 0;
}

int check_summary(const char *name)
{
    int pass = check_failures == 0 && check_count > 0;

    printf("%s: %ld checks, %ld failed: %s\n", name, check_count, check_failures,
           pass ? "PASS" : "FAIL");
    fflush(stdout);
    return pass ? 0 : 1;
}
