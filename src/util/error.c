#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *plm_status_name(plm_status s) {
    switch (s) {
    case PLM_OK: return "ok";
    case PLM_ERR_IO: return "I/O error";
    case PLM_ERR_FORMAT: return "malformed file";
    case PLM_ERR_CONFIG: return "bad config";
    case PLM_ERR_INPUT: return "bad input";
    case PLM_ERR_STATE: return "state mismatch";
    case PLM_ERR_NOMEM: return "out of memory";
    case PLM_ERR_UNSUPPORTED: return "unsupported";
    case PLM_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

void plm_error_clear(plm_error *err) {
    if (err) {
        err->code = PLM_OK;
        err->msg[0] = 0;
    }
}

plm_status plm_fail(plm_error *err, plm_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

plm_status plm_fail_prefix(plm_error *err, plm_status code, const char *fmt, ...) {
    if (!err) return code;
    char prefix[256], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t n = strlen(prefix);
    if (n > sizeof err->msg - 3) n = sizeof err->msg - 3;
    memcpy(err->msg, prefix, n);
    memcpy(err->msg + n, ": ", 2);
    memcpy(err->msg + n + 2, old, sizeof err->msg - n - 2);
    err->msg[sizeof err->msg - 1] = 0;
    if (err->code == PLM_OK) err->code = code;
    return err->code;
}
