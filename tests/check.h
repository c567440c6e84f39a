/* check.h - the tests' assertion macros (libuv's ASSERT_EQ, without the abort).
 *
 * Each macro evaluates its arguments once, prints "file:line: CHECK_xxx(a, b) failed" with both
 * values when it fails, counts the check and any failure, and evaluates to 1 if it held and 0 if
 * not, so a test can stop early with `if (!CHECK(...)) goto out;`.  A test program ends with
 * `return check_summary("name");`, which prints one line and returns the process exit status
 * (0 only if nothing failed and at least one check ran).
 *
 * Thread: the counters are plain globals; call the checks from one thread.
 */
#ifndef STW_TESTS_CHECK_H
#define STW_TESTS_CHECK_H

#include <stddef.h>

/* How many checks ran and how many failed so far in this process. */
extern long check_count;
extern long check_failures;

int check_bool(const char *file, int line, const char *expr, int ok);
int check_boolf(const char *file, int line, const char *expr, int ok, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
int check_eq_int(const char *file, int line, const char *ea, const char *eb, long long a,
                 long long b);
int check_eq_str(const char *file, int line, const char *ea, const char *eb, const char *a,
                 const char *b);
int check_near(const char *file, int line, const char *ea, const char *eb, double a, double b,
               double eps);
/* Records a failure with a free-form message (printf format). Returns 0. */
int check_failf(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prints "name: N checks, F failed: PASS|FAIL" and returns the exit status. */
int check_summary(const char *name);

#define CHECK(cond)           check_bool(__FILE__, __LINE__, #cond, !!(cond))
#define CHECKF(cond, ...)     check_boolf(__FILE__, __LINE__, #cond, !!(cond), __VA_ARGS__)
#define CHECK_EQ_INT(a, b)    check_eq_int(__FILE__, __LINE__, #a, #b, (long long)(a), (long long)(b))
#define CHECK_EQ_STR(a, b)    check_eq_str(__FILE__, __LINE__, #a, #b, (a), (b))
#define CHECK_NEAR(a, b, eps) check_near(__FILE__, __LINE__, #a, #b, (a), (b), (eps))
#define CHECK_FAIL(...)       check_failf(__FILE__, __LINE__, __VA_ARGS__)

#endif
