/*
 * status.c - names and summaries of cp_status, and the cp_error helpers.
 */
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const status_names[CP_STATUS_COUNT] = {
#define CP_STATUS_NAME(code, name, summary) [code] = name,
    CP_STATUS_LIST(CP_STATUS_NAME)
#undef CP_STATUS_NAME
};

static const char *const status_summaries[CP_STATUS_COUNT] = {
#define CP_STATUS_SUMMARY(code, name, summary) [code] = summary,
    CP_STATUS_LIST(CP_STATUS_SUMMARY)
#undef CP_STATUS_SUMMARY
};

const char *cp_status_name(cp_status status)
{
    if ((unsigned)status >= CP_STATUS_COUNT)
        return "unknown";
    return status_names[status];
}

const char *cp_status_summary(cp_status status)
{
    if ((unsigned)status >= CP_STATUS_COUNT)
        return "unknown status";
    return status_summaries[status];
}

void cp_error_clear(cp_error *err)
{
    if (err == NULL)
        return;
    err->status = CP_OK;
    err->offset = CP_ERROR_NO_OFFSET;
    err->tag = CP_ERROR_NO_TAG;
    err->detail[0] = '\0';
}

cp_status cp_error_set(cp_error *err, cp_status status, int64_t offset, uint32_t tag,
                       const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || err->status != CP_OK)
        return status;

    err->status = status;
    err->offset = offset;
    err->tag = tag;
    err->detail[0] = '\0';
    if (fmt != NULL) {
        va_start(ap, fmt);
        vsnprintf(err->detail, sizeof err->detail, fmt, ap);
        va_end(ap);
    }
    return status;
}

char *cp_error_format(const cp_error *err, char *out, size_t size)
{
    size_t used = 0;
    int n;

    if (size == 0)
        return out;
    out[0] = '\0';
    if (err == NULL)
        return out;

    n = snprintf(out, size, "%s", cp_status_summary(err->status));
    used = n < 0 ? 0 : (size_t)n;
    if (used < size && err->offset != CP_ERROR_NO_OFFSET) {
        n = snprintf(out + used, size - used, " at offset %lld", (long long)err->offset);
        used += n < 0 ? 0 : (size_t)n;
    }
    if (used < size && err->tag != CP_ERROR_NO_TAG) {
        n = snprintf(out + used, size - used, "%s tag (%04X,%04X)",
                     err->offset != CP_ERROR_NO_OFFSET ? "," : " at",
                     (unsigned)(err->tag >> 16), (unsigned)(err->tag & 0xFFFF));
        used += n < 0 ? 0 : (size_t)n;
    }
    if (used < size && err->detail[0] != '\0')
        snprintf(out + used, size - used, ": %s", err->detail);
    return out;
}
