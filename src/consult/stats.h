/*
 * stats.h - reading statistics from the order tables: how many reads, how
 * fast, how many on time, how many reviewed by a second doctor, how many
 * sent back, how many claims given back or lapsed, and the units that
 * settle each doctor's pay. For the centre's quality reports (turnaround,
 * review rate) and for billing; no patient data is in any of it.
 *
 * What a period holds: the reads (orders released) whose release falls in
 * [from, to); give-backs and lapses whose event falls in it. Per doctor a
 * read counts for its author and a give-back for the doctor who gave it
 * back (a lapse for the doctor named by its event, when one is).
 *
 * Turnaround is pooled -> released (what the clinic waits) and claimed ->
 * reported (what the doctor takes to write). The median of an even count
 * is the mean of the middle two; the 95th percentile is the nearest rank
 * (the smallest duration with at least 95 % of the reads at or below it).
 */
#ifndef CP_CONSULT_STATS_H
#define CP_CONSULT_STATS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/status.h"

typedef enum stats_group {
    STATS_TOTAL = 0,                    /* one row for the whole period */
    STATS_BY_DOCTOR = 1,
    STATS_BY_REQUESTING = 2,            /* the institution that asked */
    STATS_BY_READING = 3,               /* the institution the doctor read for */
    STATS_BY_DAY = 4,                   /* UTC days */
} stats_group;

/* "total", "doctor", "requesting", "reading", "day"; and back (-1 when unknown). */
const char *stats_group_name(stats_group g);
int stats_group_parse(const char *name);

typedef struct stats_query {
    stats_group group;
    int64_t from_us;                    /* 0: from the beginning */
    int64_t to_us;                      /* 0: up to now */
    /* "CR:1,DX:1,DR:1,MG:2,CT:3,MR:4,*:2" as dispatch_rules.weights; NULL: that string. */
    const char *weights;
} stats_query;

/* One group. Durations in µs; a rate is -1 when its denominator is 0. */
typedef struct stats_row {
    stats_group group;
    int64_t key;                        /* doctor or institution id; day: days since 1970 */
    char day[11];                       /* STATS_BY_DAY: "2026-12-03"; else "" */
    uint64_t released;                  /* reads */
    int64_t tat_median_us;              /* pooled -> released; -1 when no read */
    int64_t tat_p95_us;
    int64_t write_median_us;            /* claimed -> reported */
    int64_t write_p95_us;
    uint64_t on_time;                   /* released at or before the deadline */
    double on_time_rate;
    uint64_t reviewed_by_other;         /* approved by a reviewer who is not the author */
    double review_rate;
    uint64_t versions;                  /* of the reads: rejections + 1 each */
    uint64_t rejections;
    double returned_rate;               /* rejections / versions */
    uint64_t give_backs;
    uint64_t lapses;
    uint64_t pay_units;                 /* reads weighted by modality */
} stats_row;

/*
 * Computes the rows of q from the order tables of the SQLite database at
 * db_path (read only; one snapshot), ordered by key. *rows (free with
 * stats_free) may be NULL when *count is 0. CP_ERR_LIMIT beyond
 * STATS_ORDERS_MAX reads or STATS_GROUPS_MAX groups.
 */
cp_status stats_compute(const char *db_path, const stats_query *q, stats_row **rows,
                        size_t *count, cp_error *err);
void stats_free(stats_row *rows);

/* The weight of a modality under a weights string ("*" for the rest; 1 when none). */
unsigned stats_weight(const char *weights, const char *modality);

/* As a JSON array of objects (durations in seconds); *out is a new reference. */
cp_status stats_to_json(const stats_row *rows, size_t count, json_t **out);

/*
 * As CSV (RFC 4180: CRLF line ends, a header line, fields quoted when they
 * need it), appended to out; durations in seconds, an undefined value empty.
 */
cp_status stats_to_csv(const stats_row *rows, size_t count, cp_buf *out);

#endif
