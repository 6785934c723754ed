/*
 * log.h - one line per event, to stderr, as key=value fields.
 *
 *   2026-12-03T16:20:01.123Z level=warn event=dicom.reject assoc=12 ...
 *
 * Each line names an event an operator cares about and carries the
 * identifiers needed to follow it (association, AE title, study UID, order
 * id). Patient names, birth dates and other personal data never go in a log
 * line: log the UIDs and ids instead.
 *
 * A thread may set a context string (for example "assoc=12 calling_ae=CT1")
 * that is appended to every line it writes until it is cleared, so that
 * handlers do not repeat it on each call.
 *
 * Libraries below the services (dicom, pixel) do not log; they return errors.
 */
#ifndef CP_CORE_LOG_H
#define CP_CORE_LOG_H

#include <stdio.h>

typedef enum {
    CP_LOG_DEBUG,
    CP_LOG_INFO,
    CP_LOG_WARN,
    CP_LOG_ERROR,
    CP_LOG_OFF
} cp_log_level;

/* Lines below `level` are dropped. The default is CP_LOG_INFO. */
void cp_log_set_level(cp_log_level level);
cp_log_level cp_log_get_level(void);

/* Parses "debug", "info", "warn", "error" or "off"; returns 0 on success. */
int cp_log_parse_level(const char *name, cp_log_level *level);

/* Sends lines to `stream` instead of stderr (for tests); NULL restores stderr. */
void cp_log_set_stream(FILE *stream);

/*
 * Sets the calling thread's context, copied (up to 255 bytes) and appended
 * to each line it logs; NULL clears it.
 */
void cp_log_context_set(const char *context);

/*
 * Writes one line: the time, the level, `event=<event>`, then the fields
 * formatted from fmt (which should itself be key=value pairs separated by
 * spaces), then the thread's context. The line is written with a single
 * write, so lines from several threads never interleave.
 */
void cp_log_write(cp_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define cp_log_debug(event, ...) cp_log_write(CP_LOG_DEBUG, event, __VA_ARGS__)
#define cp_log_info(event, ...)  cp_log_write(CP_LOG_INFO, event, __VA_ARGS__)
#define cp_log_warn(event, ...)  cp_log_write(CP_LOG_WARN, event, __VA_ARGS__)
#define cp_log_error(event, ...) cp_log_write(CP_LOG_ERROR, event, __VA_ARGS__)

#endif
