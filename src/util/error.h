/* Error helpers shared by the library: fill a plm_error and return its code. */
#ifndef PLM_UTIL_ERROR_H
#define PLM_UTIL_ERROR_H

#include "packlm.h"

#if defined(__GNUC__)
#define PLM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define PLM_PRINTF(a, b)
#endif

/* Formats the message into err (when not NULL) and returns code. */
plm_status plm_fail(plm_error *err, plm_status code, const char *fmt, ...) PLM_PRINTF(3, 4);
/* Prefixes an existing message with context ("loading X: ..."); returns err->code (or code). */
plm_status plm_fail_prefix(plm_error *err, plm_status code, const char *fmt, ...) PLM_PRINTF(3, 4);
void plm_error_clear(plm_error *err);

#endif
