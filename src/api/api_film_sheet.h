/*
 * api_film_sheet.h - electronic film over HTTP (docs/api.md, "Cloud
 * film"): the film sheets of a study (film/sheet.h) made when its report
 * is released, kept in the film directory and stored into the study as a
 * second Encapsulated PDF; made on demand for the clinic
 * (GET /api/orders/{id}/film/sheet) and shown to the patient
 * (GET /film/api/{token}/film.pdf and film.png). The kiosk prints the
 * same film through api_film_sheet_write. The pictures are read from the
 * store given by api_set_film_store (api.h); without it there is no film.
 */
#ifndef CP_API_API_FILM_SHEET_H
#define CP_API_API_FILM_SHEET_H

#include <stdbool.h>

#include "api/api.h"
#include "consult/order.h"
#include "film/sheet.h"

/* The Document Title (0042,0010) of the film's Encapsulated PDF. */
#define API_FILM_SHEET_TITLE "Electronic film"

/* How a film is made; zeroed means the release's film. */
typedef struct api_film_sheet_opts {
    const char *size;                   /* "14x17in" (sheet_size_find); NULL: 14x17in */
    const char *layout;                 /* "4x5" (sheet_layout_parse); NULL: by image count */
    const char *preset;                 /* "lung"; NULL: each file's own window */
    unsigned dpi;                       /* 0: SHEET_DPI_SCREEN */
    bool landscape;
} api_film_sheet_opts;

/*
 * Writes the film PDF of the order's study to path (whole or not at all):
 * the series' images on up to SHEET_PAGES_MAX sheets, with the patient's
 * annotations. For the kiosk's printing. CP_ERR_NOT_FOUND when the order
 * or its study is unknown or holds no pictures; CP_ERR_INVALID for
 * options sheet.h refuses; CP_ERR_UNAVAILABLE without a store.
 */
cp_status api_film_sheet_write(api_service *a, int64_t order_id, const api_film_sheet_opts *o,
                               const char *path, cp_error *err);

/*
 * After a release (api_film_on_release): the film PDF kept as
 * <film_dir>/order-<id>-film.pdf and stored into the study as an
 * Encapsulated PDF titled API_FILM_SHEET_TITLE. Failures are logged.
 */
void api_film_sheet_on_release(api_service *a, const order *o);

/* Added for the report PDF's key images: one picture and where it is from. */
typedef struct api_film_key_image {
    sheet_image img;                    /* owned: sheet_image_clear */
    int64_t series_number;
    int64_t instance_number;
} api_film_key_image;

/*
 * Up to max key images of a study into out, chosen like the film: the
 * series by Series Number, and of each the middle image by Instance
 * Number, first series first; each rendered with its file's own window
 * and fitted within side x side pixels. The count made (0 when the study
 * has no pictures or there is no store); a picture that cannot be read
 * is passed over. The caller clears each out[i].img.
 */
size_t api_film_sheet_key_images(api_service *a, const char *study_uid, uint32_t side,
                                 api_film_key_image *out, size_t max);

/* GET /api/orders/{id}/film/sheet?format=pdf|png&page=N&size=&layout=&preset=&dpi=&orientation= */
cp_status api_film_sheet_handle_order(http_request *req, void *ctx);

/*
 * GET /film/api/{token}/film.pdf[?study=<uid>]: the patient's film (behind
 * the share session; study: another study of the link's scope).
 */
cp_status api_film_sheet_handle_pdf(http_request *req, void *ctx);

/* GET /film/api/{token}/film.png?page=N[&study=<uid>]: one sheet of it as a picture. */
cp_status api_film_sheet_handle_png(http_request *req, void *ctx);

#endif
