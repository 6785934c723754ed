/*
 * render.h - WADO-RS rendered resources and thumbnails (PS3.18 10.4.1.1.3
 * and 10.4.1.1.4, query parameters of 8.3.5): consumer-ready JPEG or PNG
 * pictures of a study, a series, an instance or some of its frames, made by
 * the pixel pipeline (pixel/render.h). Thumbnails are cached in the blob
 * store under keys that hold the instance's content hash.
 *
 * The parsing helpers are public so that unit tests reach them, and so that
 * WADO-URI (wado_uri.h) renders through the same code.
 */
#ifndef CP_DICOMWEB_RENDER_H
#define CP_DICOMWEB_RENDER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/status.h"
#include "dicom/io.h"
#include "dicomweb/dicomweb.h"
#include "http/http.h"
#include "pixel/render.h"
#include "store/store.h"

typedef enum {
    DWEB_MEDIA_JPEG,
    DWEB_MEDIA_PNG,
} dweb_render_media;

/* JPEG quality when the request names none. */
#define DWEB_RENDER_QUALITY_DEFAULT 90

/* The side a thumbnail fits in when no viewport is asked for. */
#define DWEB_THUMB_SIZE_DEFAULT 128

/* What a rendering request asks for. */
typedef struct dweb_render_opts {
    px_render_params params;        /* window, function, viewport */
    bool has_region;
    bool region_fraction;           /* WADO-URI: x1,y1,x2,y2 in 0..1 */
    double region[4];               /* else sx,sy,sw,sh in source pixels */
    int quality;                    /* 1-100, JPEG only */
    dweb_render_media media;
} dweb_render_opts;

/* Defaults: the data set's window, natural size, JPEG at the default quality. */
void dweb_render_opts_init(dweb_render_opts *o);

/*
 * window=center,width[,function] (PS3.18 8.3.5.1.4); function is linear
 * (the default), linear-exact or sigmoid. CP_ERR_INVALID for anything
 * else, a width below 1 (linear) or not above 0, or a non-finite number.
 */
cp_status dweb_render_parse_window(const char *text, dweb_render_opts *o);

/*
 * viewport=vw,vh[,sx,sy,sw,sh] (PS3.18 8.3.5.1.3): vw and vh 1 to
 * DWEB_RENDER_VIEWPORT_MAX, the source region in whole pixels, sx and sy
 * from 0, sw and sh above 0 (flipping by negative sizes is refused).
 */
cp_status dweb_render_parse_viewport(const char *text, dweb_render_opts *o);

/* quality=1..100 (PS3.18 8.3.5.1.5). */
cp_status dweb_render_parse_quality(const char *text, int *quality);

/*
 * The media type to answer with for an Accept header (or the accept query
 * parameter): image/jpeg when none, when it allows anything, or when it
 * prefers JPEG; image/png when preferred. -1 when neither is acceptable.
 */
int dweb_render_choose_media(const char *accept);

/* The Content-Type of a media. */
const char *dweb_render_media_type(dweb_render_media media);

/*
 * Renders frame `frame` (1-based) of the instance stored under blob_key
 * into out, as o asks. Returns an HTTP status: 200, 400 for a region
 * outside the image, 404 for a frame that is not there, 406 for an
 * instance without pixel data, 501 for a transfer syntax without decoder,
 * 500 for pixel data that does not decode; *why says it in words.
 */
int dweb_render_blob(store *st, const char *blob_key, uint32_t frame,
                     const dweb_render_opts *o, cp_buf *out, const char **why);

/*
 * Answers one rendered frame of an instance (blob_key, and hash, its
 * content hash from the index): from the service's cache when the same
 * picture was made before (dweb_cache_get, keyed by its ETag), else
 * rendered and kept there; 304 for an If-None-Match that holds its ETag;
 * the error of dweb_render_blob as JSON.
 */
cp_status dweb_render_respond(http_request *req, dweb_service *svc, const char *blob_key,
                              const uint8_t *hash, uint32_t frame, const dweb_render_opts *o);

/* Route handlers; ctx is the dweb_service. */
cp_status dweb_render_rendered(http_request *req, void *ctx);
cp_status dweb_render_thumbnail(http_request *req, void *ctx);

#endif
