/*
 * api_film_file.h - one stored instance of a cloud film link sent as
 * application/dicom (GET /film/api/{token}/instances/{sop}/file): as it is
 * stored for the patient's own link, or de-identified (film/deident.h) for
 * a link that asks for it, streamed from the store to the connection
 * without the file ever being held in memory.
 */
#ifndef CP_API_API_FILM_FILE_H
#define CP_API_API_FILM_FILE_H

#include "core/status.h"
#include "film/deident.h"
#include "http/http.h"
#include "store/store.h"

/*
 * Answers with the blob stored under blob_key in st. filename (ASCII, no
 * quotes) names the attachment. d NULL: the bytes as stored; else d
 * de-identifies them on a thread of their own, whose output the response
 * reads through a socket pair, and d belongs to the response from here on
 * (also on failure: it is closed when the response is done). A blob that
 * cannot be opened answers 404; a failure once the body has started cuts
 * the connection (the client sees a truncated body, never a wrong one).
 */
cp_status api_film_file_respond(http_request *req, store *st, const char *blob_key,
                                const char *filename, film_deident *d);

#endif
