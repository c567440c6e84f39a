/* error.c - stw_code names and the one function that fills an stw_error.
 * The core never logs; it returns an stw_error whose `name` is the API's snake_case error
 * code and whose message names the field or object at fault. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "steward.h"

stw_code stw_errorf(stw_error *err, stw_code code, const char *name, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return code;
    err->code = code;
    snprintf(err->name, sizeof err->name, "%s", name ? name : stw_code_name(code));
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    err->nproblems = 0;
    return code;
}

const char *stw_code_name(stw_code code)
{
    switch (code) {
    case STW_OK: return "ok";
    case STW_INVALID: return "invalid";
    case STW_UNAUTHENTICATED: return "unauthenticated";
    case STW_FORBIDDEN: return "forbidden";
    case STW_NOT_FOUND: return "not_found";
    case STW_METHOD: return "method_not_allowed";
    case STW_CONFLICT: return "conflict";
    case STW_GONE: return "gone";
    case STW_TOO_LARGE: return "too_large";
    case STW_UNPROCESSABLE: return "validation_failed";
    case STW_UNAVAILABLE: return "unavailable";
    case STW_NOMEM: return "out_of_memory";
    case STW_STORE: return "store_error";
    case STW_INDEX: return "index_error";
    case STW_INTERNAL: return "internal_error";
    }
    return "internal_error";
}
