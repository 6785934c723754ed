/*
 * kiosk.h - the record of what the self-service print kiosks printed
 * (api_kiosk.c; docs/api.md, "Kiosk"): one row per print, in the table
 * kiosk_print of the index database, for the hospital's counts per day and
 * kiosk and for the "printed n times" the kiosk shows beside an item.
 *
 * A row holds no patient data: the institution, the kiosk (the principal
 * that printed: its kind, id and name), the order, what was printed
 * ("report" or "film"), how many pages, and when.
 *
 * Each call opens the database, does its work and closes it again: a
 * kiosk prints a few times a minute at most, and so the API needs no store
 * kept open. The table is made on first use (CREATE ... IF NOT EXISTS);
 * its layout is kept by kiosk_schema_version, append only, like the other
 * tables of the index database.
 */
#ifndef CP_FILM_KIOSK_H
#define CP_FILM_KIOSK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Bytes of a kiosk's name with its NUL (a principal's name). */
#define FILM_KIOSK_NAME_SIZE 65

/* Pages of one print at most. */
#define FILM_KIOSK_PAGES_MAX 200

typedef struct film_kiosk_print {
    int64_t id;                         /* set by film_kiosk_record */
    int64_t institution_id;             /* the kiosk's */
    int kiosk_kind;                     /* principal_kind of the kiosk */
    int64_t kiosk_id;                   /* its token or user id */
    char kiosk[FILM_KIOSK_NAME_SIZE];   /* its name, as it was then */
    int64_t order_id;
    bool film;                          /* false: the report */
    int pages;                          /* 1 to FILM_KIOSK_PAGES_MAX */
    int64_t time_us;                    /* 0: now */
} film_kiosk_print;

/*
 * Records one print; p->id (and time_us when 0) are set. CP_ERR_INVALID
 * for pages out of range or no order.
 */
cp_status film_kiosk_record(const char *db_path, film_kiosk_print *p, cp_error *err);

/* How many prints of the order were recorded (report and film alike). */
cp_status film_kiosk_count(const char *db_path, int64_t order_id, int64_t *count,
                           cp_error *err);

/* One line of the counts: a day (UTC) and a kiosk. */
typedef struct film_kiosk_day {
    char day[11];                       /* "2026-12-04" */
    int64_t institution_id;
    int kiosk_kind;
    int64_t kiosk_id;
    char kiosk[FILM_KIOSK_NAME_SIZE];   /* the newest name it printed under */
    int64_t reports;                    /* prints of reports */
    int64_t films;                      /* prints of film sheets */
    int64_t pages;                      /* pages of both */
} film_kiosk_day;

typedef cp_status (*film_kiosk_day_fn)(void *ctx, const film_kiosk_day *d);

/*
 * The counts of prints in [from_us, to_us) (0: open), by day, then
 * institution and kiosk. CP_ERR_STOPPED from fn ends the walk with CP_OK.
 */
cp_status film_kiosk_days(const char *db_path, int64_t from_us, int64_t to_us,
                          film_kiosk_day_fn fn, void *ctx, cp_error *err);

#endif
