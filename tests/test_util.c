/* test_util.c - the core's pure helpers from include/steward.h: time parse/format, name rules,
 * enum parsers and names, error filling; and src/util.h's huge-page buffers.  Expected values
 * come from the RFC 3339 and HL7 rules and from libc (timegm/gmtime_r) as an independent
 * oracle, never from the code under test. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "steward.h"
#include "util.h"

/* Independent reference: ms since the epoch for a UTC calendar time, via libc. */
static int64_t ref_ms(int y, int mo, int d, int h, int mi, int s, int ms)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

/* Independent reference for stw_time_format. */
static void ref_format(int64_t ms, char out[40])
{
    int64_t sec = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
    int milli = (int)(ms - sec * 1000);
    time_t t = (time_t)sec;
    struct tm tm;
    char buf[32];

    gmtime_r(&t, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 40, "%s.%03dZ", buf, milli);
}

static void check_parse(const char *s, int64_t want)
{
    int64_t got = -42;
    int rc = stw_time_parse(s, &got);
    CHECKF(rc == 0, "stw_time_parse(\"%s\") returned %d", s, rc);
    CHECKF(rc != 0 || got == want, "stw_time_parse(\"%s\") = %lld, want %lld", s, (long long)got,
           (long long)want);
}

static void check_parse_fails(const char *s)
{
    int64_t got = 12345;
    int rc = stw_time_parse(s, &got);
    CHECKF(rc != 0, "stw_time_parse(\"%s\") accepted an invalid time (-> %lld)", s, (long long)got);
    CHECKF(got == 12345, "stw_time_parse(\"%s\") wrote its output on failure", s);
}

static void test_time(void)
{
    char out[32], ref[40];

    check_parse("1970-01-01T00:00:00Z", 0);
    check_parse("1970-01-01T00:00:00.000Z", 0);
    check_parse("2000-01-01T00:00:00Z", 946684800000LL);
    check_parse("2026-11-23T01:02:03.456Z", ref_ms(2026, 11, 23, 1, 2, 3, 456));
    check_parse("2024-02-29T12:00:00Z", ref_ms(2024, 2, 29, 12, 0, 0, 0));
    check_parse("2025-12-31T23:59:59.999Z", ref_ms(2025, 12, 31, 23, 59, 59, 999));
    check_parse("1969-12-31T23:59:59Z", -1000);
    /* Offsets: local time minus offset is UTC. */
    check_parse("2026-11-23T03:02:03.456+02:00", ref_ms(2026, 11, 23, 1, 2, 3, 456));
    check_parse("2026-11-22T19:32:03.456-05:30", ref_ms(2026, 11, 23, 1, 2, 3, 456));
    check_parse("2026-01-01T00:30:00+01:00", ref_ms(2025, 12, 31, 23, 30, 0, 0));
    check_parse("2026-01-01T00:00:00+00:00", ref_ms(2026, 1, 1, 0, 0, 0, 0));
    check_parse("2026-01-01T00:00:00.5Z", ref_ms(2026, 1, 1, 0, 0, 0, 500));
    {
        /* More than millisecond precision: must parse, to 123 ms (truncated or rounded). */
        int64_t got = 0;
        int rc = stw_time_parse("2026-01-01T00:00:00.123456Z", &got);
        int64_t base = ref_ms(2026, 1, 1, 0, 0, 0, 0);
        CHECKF(rc == 0 && (got == base + 123 || got == base + 124),
               "microsecond time: rc=%d got=%lld", rc, (long long)(got - base));
    }

    check_parse_fails("");
    check_parse_fails("not a time");
    check_parse_fails("2026-01-01");
    check_parse_fails("2026-01-01T00:00:00");  /* RFC 3339 requires Z or an offset */
    check_parse_fails("2026-13-01T00:00:00Z"); /* month 13 */
    check_parse_fails("2026-00-10T00:00:00Z"); /* month 0 */
    check_parse_fails("2026-02-30T00:00:00Z"); /* no Feb 30 */
    check_parse_fails("2025-02-29T00:00:00Z"); /* 2025 is not a leap year */
    check_parse_fails("2026-04-31T00:00:00Z"); /* April has 30 days */
    check_parse_fails("2026-01-00T00:00:00Z"); /* day 0 */
    check_parse_fails("2026-01-01T24:00:01Z"); /* hour 24 */
    check_parse_fails("2026-01-01T25:00:00Z");
    check_parse_fails("2026-01-01T00:60:00Z");      /* minute 60 */
    check_parse_fails("2026-01-01T00:00:00Zjunk");  /* trailing garbage */
    check_parse_fails("2026-01-01T00:00:00+0100");  /* offset needs a colon */
    check_parse_fails("2026-01-01T00:00:00+25:00"); /* offset out of range */
    check_parse_fails("2026-1-01T00:00:00Z");       /* two-digit month */
    check_parse_fails("2026-01-01T00:00:00.Z");     /* empty fraction */
    check_parse_fails(" 2026-01-01T00:00:00Z");

    /* Known formats. */
    stw_time_format(0, out);
    CHECK_EQ_STR(out, "1970-01-01T00:00:00.000Z");
    stw_time_format(ref_ms(2026, 11, 23, 1, 2, 3, 456), out);
    CHECK_EQ_STR(out, "2026-11-23T01:02:03.456Z");
    stw_time_format(ref_ms(2024, 2, 29, 23, 59, 59, 7), out);
    CHECK_EQ_STR(out, "2024-02-29T23:59:59.007Z");

    /* Random round trips over 1970..2100 against libc. */
    srand(12345);
    for (int i = 0; i < 2000; i++) {
        int64_t ms = ((int64_t)rand() << 20 ^ (int64_t)rand()) % 4102444800000LL;
        int64_t back = -1;
        if (ms < 0)
            ms = -ms;
        stw_time_format(ms, out);
        ref_format(ms, ref);
        if (!CHECK_EQ_STR(out, ref))
            break;
        if (!CHECKF(stw_time_parse(out, &back) == 0 && back == ms,
                    "round trip of %lld via '%s' gave %lld", (long long)ms, out, (long long)back))
            break;
    }
}

static void test_names(void)
{
    char s64[65], s65[66];

    memset(s64, 'a', 64);
    s64[64] = '\0';
    memset(s65, 'a', 65);
    s65[65] = '\0';

    /* products: [a-z0-9][a-z0-9-]{0,63} */
    CHECK(stw_valid_name("a"));
    CHECK(stw_valid_name("0"));
    CHECK(stw_valid_name("clinical-notes"));
    CHECK(stw_valid_name("labs-2026"));
    CHECK(stw_valid_name("a-"));
    CHECK(stw_valid_name(s64));
    CHECK(!stw_valid_name(s65));
    CHECK(!stw_valid_name(""));
    CHECK(!stw_valid_name("-abc"));
    CHECK(!stw_valid_name("Abc"));
    CHECK(!stw_valid_name("abC"));
    CHECK(!stw_valid_name("a_b"));
    CHECK(!stw_valid_name("a.b"));
    CHECK(!stw_valid_name("a b"));
    CHECK(!stw_valid_name("a/b"));
    CHECK(!stw_valid_name("a@b"));
    CHECK(!stw_valid_name("caf\xc3\xa9"));
    CHECK(!stw_valid_name(".."));

    /* principals: as products, plus '.' and '_' */
    CHECK(stw_valid_principal_name("rag-cardiology"));
    CHECK(stw_valid_principal_name("svc.rag_1"));
    CHECK(stw_valid_principal_name(s64));
    CHECK(!stw_valid_principal_name(s65));
    CHECK(!stw_valid_principal_name(""));
    CHECK(!stw_valid_principal_name("Admin"));
    CHECK(!stw_valid_principal_name("a b"));
    CHECK(!stw_valid_principal_name("a/b"));
    CHECK(!stw_valid_principal_name("a:b"));

    /* versions: [A-Za-z0-9._-]{1,64} */
    CHECK(stw_valid_version_name("2026-11-01"));
    CHECK(stw_valid_version_name("v1"));
    CHECK(stw_valid_version_name("V1.2_rc-3"));
    CHECK(stw_valid_version_name("-x"));
    CHECK(stw_valid_version_name(s64));
    CHECK(!stw_valid_version_name(s65));
    CHECK(!stw_valid_version_name(""));
    CHECK(!stw_valid_version_name("a/b"));
    CHECK(!stw_valid_version_name("a@b"));
    CHECK(!stw_valid_version_name("a b"));
    CHECK(!stw_valid_version_name("a:b"));
    CHECK(!stw_valid_version_name("caf\xc3\xa9"));
}

static void test_enums(void)
{
    static const char *const purposes[] = {"TREAT",   "ETREAT", "HPAYMT",   "HOPERAT", "HRESCH",
                                           "PUBHLTH", "HMARKT", "COVERAGE", "HLEGAL"};
    static const int purpose_values[] = {
        STW_PURPOSE_TREAT,   STW_PURPOSE_ETREAT,   STW_PURPOSE_HPAYMT,
        STW_PURPOSE_HOPERAT, STW_PURPOSE_HRESCH,   STW_PURPOSE_PUBHLTH,
        STW_PURPOSE_HMARKT,  STW_PURPOSE_COVERAGE, STW_PURPOSE_HLEGAL};
    static const char *const confs[] = {"U", "L", "M", "N", "R", "V"};

    for (size_t i = 0; i < sizeof purposes / sizeof purposes[0]; i++) {
        CHECK_EQ_INT(stw_purpose_parse(purposes[i]), purpose_values[i]);
        CHECK_EQ_STR(stw_purpose_name(purpose_values[i]), purposes[i]);
    }
    CHECK_EQ_INT(stw_purpose_parse(""), -1);
    CHECK_EQ_INT(stw_purpose_parse("FOO"), -1);
    CHECK_EQ_INT(stw_purpose_parse("TREATX"), -1);
    CHECK_EQ_INT(stw_purpose_parse("TREA"), -1);
    CHECK_EQ_INT(stw_purpose_parse(" TREAT"), -1);
    CHECK(stw_purpose_name(-1) == NULL);
    CHECK(stw_purpose_name(STW_PURPOSE_COUNT) == NULL);

    /* Confidentiality: parsed values follow the HL7 order U < L < M < N < R < V. */
    for (size_t i = 0; i < 6; i++) {
        int c = stw_conf_parse(confs[i]);
        CHECKF(c >= 0, "stw_conf_parse(%s) = %d", confs[i], c);
        CHECK_EQ_STR(stw_conf_name(c), confs[i]);
        if (i > 0)
            CHECKF(stw_conf_parse(confs[i - 1]) < c, "%s is not below %s", confs[i - 1], confs[i]);
    }
    CHECK_EQ_INT(stw_conf_parse("U"), STW_CONF_U);
    CHECK_EQ_INT(stw_conf_parse("V"), STW_CONF_V);
    CHECK_EQ_INT(stw_conf_parse(""), -1);
    CHECK_EQ_INT(stw_conf_parse("X"), -1);
    CHECK_EQ_INT(stw_conf_parse("UU"), -1);
    CHECK_EQ_INT(stw_conf_parse("NR"), -1);
    CHECK(stw_conf_name(-1) == NULL);
    CHECK(stw_conf_name(6) == NULL);

    CHECK_EQ_INT(stw_metric_parse("cosine"), STW_METRIC_COSINE);
    CHECK_EQ_INT(stw_metric_parse("ip"), STW_METRIC_IP);
    CHECK_EQ_INT(stw_metric_parse("l2"), STW_METRIC_L2);
    CHECK_EQ_INT(stw_metric_parse("dot"), -1);
    CHECK_EQ_INT(stw_metric_parse(""), -1);
    CHECK_EQ_STR(stw_metric_name(STW_METRIC_COSINE), "cosine");
    CHECK_EQ_STR(stw_metric_name(STW_METRIC_IP), "ip");
    CHECK_EQ_STR(stw_metric_name(STW_METRIC_L2), "l2");
    CHECK(stw_metric_name(3) == NULL);

    CHECK_EQ_INT(stw_role_parse("admin"), STW_ROLE_ADMIN);
    CHECK_EQ_INT(stw_role_parse("owner"), STW_ROLE_OWNER);
    CHECK_EQ_INT(stw_role_parse("consumer"), STW_ROLE_CONSUMER);
    CHECK_EQ_INT(stw_role_parse("auditor"), STW_ROLE_AUDITOR);
    CHECK_EQ_INT(stw_role_parse("root"), -1);
    CHECK_EQ_INT(stw_role_parse(""), -1);
    CHECK_EQ_STR(stw_role_name(STW_ROLE_ADMIN), "admin");
    CHECK_EQ_STR(stw_role_name(STW_ROLE_CONSUMER), "consumer");
    CHECK_EQ_STR(stw_role_name(STW_ROLE_OWNER), "owner");
    CHECK_EQ_STR(stw_role_name(STW_ROLE_AUDITOR), "auditor");

    CHECK_EQ_STR(stw_state_name(STW_DRAFT), "draft");
    CHECK_EQ_STR(stw_state_name(STW_PUBLISHED), "published");
    CHECK_EQ_STR(stw_state_name(STW_RETIRED), "retired");
}

static void test_errors(void)
{
    stw_error err;
    char longname[200];
    const char *names[STW_INTERNAL + 1];

    memset(&err, 0, sizeof err);
    CHECK_EQ_INT(stw_errorf(&err, STW_FORBIDDEN, "not_entitled", "no grant covers '%s' for %s",
                            "labs", "TREAT"),
                 STW_FORBIDDEN);
    CHECK_EQ_INT(err.code, STW_FORBIDDEN);
    CHECK_EQ_STR(err.name, "not_entitled");
    CHECK_EQ_STR(err.message, "no grant covers 'labs' for TREAT");
    CHECK_EQ_INT(stw_errorf(NULL, STW_NOT_FOUND, "not_found", "x %d", 1), STW_NOT_FOUND);

    /* Over-long messages are cut, never overflow, and stay NUL-terminated. */
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    stw_errorf(&err, STW_INVALID, "invalid", "%s%s%s%s%s%s%s", longname, longname, longname,
               longname, longname, longname, longname);
    CHECK(memchr(err.message, '\0', sizeof err.message) != NULL);
    CHECK_EQ_INT(err.code, STW_INVALID);

    /* Every code has a distinct snake_case name. */
    for (int c = STW_OK; c <= STW_INTERNAL; c++) {
        const char *n = stw_code_name((stw_code)c);
        names[c] = n;
        if (!CHECKF(n != NULL && *n, "stw_code_name(%d) is empty", c))
            continue;
        for (const char *p = n; *p; p++)
            if (!CHECKF((*p >= 'a' && *p <= 'z') || *p == '_' || (*p >= '0' && *p <= '9'),
                        "stw_code_name(%d) = '%s' is not snake_case", c, n))
                break;
        for (int d = STW_OK; d < c; d++)
            CHECKF(names[d] == NULL || strcmp(names[d], n) != 0,
                   "codes %d and %d share the name '%s'", d, c, n);
    }
    CHECK_EQ_STR(stw_code_name(STW_INVALID), "invalid");
    CHECK_EQ_STR(stw_code_name(STW_NOT_FOUND), "not_found");
}

/* The process's address space in KB (VmSize in /proc/self/status), or -1. */
static long vm_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;

    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmSize: %ld kB", &kb) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return kb;
}

/* The KB of 2 MB pages backing the mapping that holds p (/proc/self/smaps), or -1. */
static long huge_kb(const void *p)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    int inside = 0;
    long kb = -1;

    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
            inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
        else if (inside && sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
            break;
    }
    if (f != NULL)
        fclose(f);
    return kb;
}

/* util_huge_alloc: zeroed, writable, 2 MB-aligned memory of any size; util_huge_advise leaves
 * contents alone. Whether the kernel gives 2 MB pages (THP in madvise or always mode, memory
 * not too fragmented) is its choice, so that is printed, not checked. */
static void test_huge(void)
{
    static const size_t sizes[] = {0, 1, 4095, 4096, (size_t)3 << 20, ((size_t)5 << 20) + 7};
    size_t big = (size_t)9 << 20;
    unsigned char *m;

    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i], nonzero = 0;
        unsigned char *p = util_huge_alloc(n);
        if (!CHECKF(p != NULL, "util_huge_alloc(%zu) failed", n))
            continue;
        CHECKF(((uintptr_t)p & (((uintptr_t)2 << 20) - 1)) == 0,
               "%zu bytes at %p: not 2 MB-aligned", n, (void *)p);
        for (size_t j = 0; j < n; j++)
            nonzero += p[j] != 0;
        CHECKF(nonzero == 0, "%zu bytes: %zu not zero", n, nonzero);
        if (n > 0) {
            memset(p, 0xa5, n);
            CHECK(p[0] == 0xa5 && p[n - 1] == 0xa5);
        }
        if (n == ((size_t)5 << 20) + 7)
            printf("util: a 5 MB buffer has %ld KB on 2 MB pages\n", huge_kb(p));
        util_huge_free(p, n);
    }
    util_huge_free(NULL, 10); /* a no-op, as free(NULL) */
    {
        /* a free of the size allocated returns all of it: the pieces trimmed off the over-map
         * and the rounded tail too (a leak of up to 2 MB a round would show as ~4 GB) */
        long before = vm_kb(), after;
        for (int round = 0; round < 2000; round++) {
            size_t n = ((size_t)5 << 20) + (size_t)round * 977;
            unsigned char *p = util_huge_alloc(n);
            if (!CHECKF(p != NULL, "round %d: util_huge_alloc failed", round))
                break;
            p[n - 1] = 1;
            util_huge_free(p, n);
        }
        after = vm_kb();
        CHECKF(before > 0 && after - before < 16 * 1024, "address space grew %ld KB over 2000 "
               "allocations freed", after - before);
    }

    /* advise: memory another allocator filled, at an offset that is not page-aligned */
    m = malloc(big);
    if (!CHECK(m != NULL))
        return;
    for (size_t j = 0; j < big; j++)
        m[j] = (unsigned char)(j * 2654435761u >> 13);
    util_huge_advise(m + 123, big - 1000);
    util_huge_advise(NULL, big);
    util_huge_advise(m, 100); /* no whole 2 MB page inside: nothing to do */
    {
        size_t bad = 0;
        for (size_t j = 0; j < big; j++)
            bad += m[j] != (unsigned char)(j * 2654435761u >> 13);
        CHECKF(bad == 0, "util_huge_advise changed %zu bytes", bad);
    }
    printf("util: a 9 MB malloc'd buffer has %ld KB on 2 MB pages after util_huge_advise\n",
           huge_kb(m + ((size_t)4 << 20)));
    free(m);
}

int main(void)
{
    test_huge();
    test_time();
    test_names();
    test_enums();
    test_errors();
    return check_summary("util");
}
