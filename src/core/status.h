/*
 * status.h - the result vocabulary of cloudpacs.
 *
 * Every fallible function returns a cp_status. The list below is the only
 * place where a status is defined: its enum name, its short stable name (used
 * in logs and JSON error bodies) and its human summary all come from it.
 *
 * Where more than a status is needed (parse errors, above all), the caller
 * passes a cp_error, which adds a formatted detail, the byte offset and the
 * DICOM tag where the problem was found.
 */
#ifndef CP_CORE_STATUS_H
#define CP_CORE_STATUS_H

#include <stddef.h>
#include <stdint.h>

#define CP_STATUS_LIST(X)                                                         \
    X(CP_OK,              "ok",            "success")                              \
    X(CP_ERR_NOMEM,       "nomem",         "out of memory")                        \
    X(CP_ERR_IO,          "io",            "input/output error")                   \
    X(CP_ERR_INVALID,     "invalid",       "invalid argument")                     \
    X(CP_ERR_MALFORMED,   "malformed",     "malformed data")                       \
    X(CP_ERR_TRUNCATED,   "truncated",     "data ends before its declared length") \
    X(CP_ERR_LIMIT,       "limit",         "a configured limit was exceeded")      \
    X(CP_ERR_UNSUPPORTED, "unsupported",   "not supported")                        \
    X(CP_ERR_NOT_FOUND,   "not_found",     "not found")                            \
    X(CP_ERR_EXISTS,      "exists",        "already exists")                       \
    X(CP_ERR_CHARSET,     "charset",       "text could not be decoded")            \
    X(CP_ERR_CONFIG,      "config",        "configuration error")                  \
    X(CP_ERR_AGAIN,       "again",         "try again")                            \
    X(CP_ERR_STOPPED,     "stopped",       "stopped at the requested point")       \
    X(CP_ERR_UNAUTHENTICATED, "unauthenticated", "who is asking is not known")     \
    X(CP_ERR_FORBIDDEN,   "forbidden",     "not allowed for this identity")        \
    X(CP_ERR_UNAVAILABLE, "unavailable",   "a service this needs is unavailable")

typedef enum {
#define CP_STATUS_ENUM(code, name, summary) code,
    CP_STATUS_LIST(CP_STATUS_ENUM)
#undef CP_STATUS_ENUM
    CP_STATUS_COUNT
} cp_status;

/* Short stable name of a status ("malformed"); never NULL. */
const char *cp_status_name(cp_status status);

/* Human summary of a status ("malformed data"); never NULL. */
const char *cp_status_summary(cp_status status);

#define CP_ERROR_DETAIL_MAX 240
#define CP_ERROR_NO_OFFSET  INT64_C(-1)
#define CP_ERROR_NO_TAG     UINT32_C(0xFFFFFFFF)

/*
 * The detail of a failure: what went wrong, where in the input, and at which
 * tag. Callers own the struct (usually on their stack); functions that take a
 * cp_error * accept NULL when the caller wants only the status.
 */
typedef struct cp_error {
    cp_status status;
    int64_t offset;             /* byte offset in the input, or CP_ERROR_NO_OFFSET */
    uint32_t tag;               /* DICOM tag (group << 16 | element), or CP_ERROR_NO_TAG */
    char detail[CP_ERROR_DETAIL_MAX];
} cp_error;

/* Clears an error to CP_OK with no offset, tag or detail. */
void cp_error_clear(cp_error *err);

/*
 * Records a failure in err (when err is not NULL) and returns status, so that
 * a caller can write `return cp_error_set(err, CP_ERR_MALFORMED, off, tag, ...)`.
 * The first failure recorded wins: a later call on an error that already holds
 * a failure keeps the original, which is nearer the cause.
 */
cp_status cp_error_set(cp_error *err, cp_status status, int64_t offset, uint32_t tag,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/*
 * Formats an error for people: "malformed data at offset 132, tag (0010,0010):
 * value length 70000 exceeds the 65534 bytes left". Returns out.
 */
char *cp_error_format(const cp_error *err, char *out, size_t size);

#endif
