/*
 * log.c - structured one-line logging.
 */
#include "core/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX     2048
#define LOG_CONTEXT_MAX  256

static atomic_int log_level = CP_LOG_INFO;
static FILE *_Atomic log_stream;
static _Thread_local char log_context[LOG_CONTEXT_MAX];

static const char *const level_names[] = { "debug", "info", "warn", "error", "off" };

void cp_log_set_level(cp_log_level level)
{
    atomic_store(&log_level, (int)level);
}

cp_log_level cp_log_get_level(void)
{
    return (cp_log_level)atomic_load(&log_level);
}

int cp_log_parse_level(const char *name, cp_log_level *level)
{
    for (int i = 0; i <= CP_LOG_OFF; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *level = (cp_log_level)i;
            return 0;
        }
    }
    return -1;
}

void cp_log_set_stream(FILE *stream)
{
    atomic_store(&log_stream, stream);
}

void cp_log_context_set(const char *context)
{
    if (context == NULL) {
        log_context[0] = '\0';
        return;
    }
    snprintf(log_context, sizeof log_context, "%s", context);
}

static size_t log_format_time(char *out, size_t size)
{
    struct timespec now;
    struct tm tm;
    size_t n;

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    n = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(out + n, size - n, ".%03ldZ", now.tv_nsec / 1000000);
    return n;
}

void cp_log_write(cp_log_level level, const char *event, const char *fmt, ...)
{
    char line[LOG_LINE_MAX];
    size_t used, room;
    va_list ap;
    int n;
    FILE *stream;

    if ((int)level < atomic_load(&log_level) || level >= CP_LOG_OFF)
        return;

    /* Room is kept for the newline, so long lines are cut, never unterminated. */
    room = sizeof line - 1;
    used = log_format_time(line, room);
    n = snprintf(line + used, room - used, " level=%s event=%s", level_names[level], event);
    used += n < 0 ? 0 : (size_t)n;

    if (fmt != NULL && fmt[0] != '\0' && used < room - 1) {
        line[used++] = ' ';
        va_start(ap, fmt);
        n = vsnprintf(line + used, room - used, fmt, ap);
        va_end(ap);
        used += n < 0 ? 0 : (size_t)n;
    }
    if (log_context[0] != '\0' && used < room - 1) {
        n = snprintf(line + used, room - used, " %s", log_context);
        used += n < 0 ? 0 : (size_t)n;
    }
    /* A cut field leaves its NUL at room - 1; the newline takes its place. */
    if (used > room - 1)
        used = room - 1;
    line[used++] = '\n';

    stream = atomic_load(&log_stream);
    if (stream != NULL) {
        fwrite(line, 1, used, stream);
        fflush(stream);
        return;
    }
    /* One write(2) per line keeps lines from concurrent threads whole. */
    if (write(STDERR_FILENO, line, used) < 0)
        return;
}
