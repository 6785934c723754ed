/*
 * wado_uri.h - WADO-URI (PS3.18 section 9): GET /wado?requestType=WADO&...
 * answering one instance as application/dicom or one frame rendered as
 * image/jpeg or image/png, registered at /wado and /dicom-web/wado.
 */
#ifndef CP_DICOMWEB_WADO_URI_H
#define CP_DICOMWEB_WADO_URI_H

#include "core/status.h"
#include "dicomweb/render.h"
#include "http/http.h"

/* The WADO-URI routes; ctx is the dweb_service. */
#define DWEB_WADO_URI_PATH "/wado"

/*
 * Reads the rendering parameters of a WADO-URI request (9.1.2.1: rows,
 * columns, region, windowCenter, windowWidth, imageQuality) from the query
 * into o, and frameNumber into *frame (1 when absent). 0, or the HTTP
 * status to answer with and *why.
 */
int dweb_wado_uri_options(http_request *req, dweb_render_opts *o, uint32_t *frame,
                          const char **why);

cp_status dweb_wado_uri_handle(http_request *req, void *ctx);

#endif
