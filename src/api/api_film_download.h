/*
 * api_film_download.h - the patient's download of a whole study from the
 * cloud film page (docs/api.md, "Cloud film"):
 *
 *   GET /film/api/{token}/download.zip
 *
 * One ZIP (film/zipstream.h), streamed with chunked transfer as it is
 * made: the study's instances as stored (the lossless originals) under
 * DICOM/PAT00001/STU00001/SERnnnnn/IMGnnnnn, the released report's PDF as
 * REPORT.PDF, and last the DICOMDIR (film/dicomdir.h) that lists them. A
 * link with deidentify gets every instance through film/deident.h, a
 * DICOMDIR with the replaced UIDs and the link's pseudonym, and neither
 * REPORT.PDF nor the study's encapsulated documents (the report PDF names
 * the patient in its text); an instance the de-identifier cannot read is
 * left out (and logged), never sent as stored. One audit record,
 * share_download, per download. ?study=<uid> picks another study of a
 * patient link's scope, as on the other routes. The blobs come from the
 * store given by api_set_film_store (api.h); without it the route answers
 * 503.
 */
#ifndef CP_API_API_FILM_DOWNLOAD_H
#define CP_API_API_FILM_DOWNLOAD_H

#include "api/api.h"

/* Instances of one download at most. */
#define API_FILM_DOWNLOAD_INSTANCES_MAX 100000

/* Bytes read from a blob per step of the stream. */
#define API_FILM_DOWNLOAD_CHUNK (256u * 1024)

/* The route handler; api_film_register registers it. */
cp_status api_film_download(http_request *req, void *ctx);

#endif
