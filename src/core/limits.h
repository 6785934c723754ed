/*
 * limits.h - every hard limit in cloudpacs, in one place.
 *
 * Input from the network or from files is checked against these before any
 * memory is allocated for it. Each limit says why it has the value it has.
 * They are compile-time defaults; where an operator may need another value,
 * the configuration key that overrides it at run time is named.
 */
#ifndef CP_CORE_LIMITS_H
#define CP_CORE_LIMITS_H

/* --- configuration --------------------------------------------------------- */

/* A configuration file is a few kilobytes; a megabyte means a wrong file. */
#define CP_CONFIG_FILE_MAX        (1024 * 1024)
/* Section and key names are short identifiers. */
#define CP_CONFIG_NAME_MAX        64
/* Values hold paths, URLs and lists of AE titles. */
#define CP_CONFIG_VALUE_MAX       4096

/* --- DICOM data sets (PS3.5) ---------------------------------------------- */

/*
 * Largest value loaded into memory when a reader is asked to load a value.
 * Larger values (pixel data, waveforms, big private blobs) are handed as an
 * offset and a length into the source and read by streaming. 64 MiB covers
 * every non-bulk attribute seen in practice with a wide margin.
 */
#define DCM_VALUE_LOAD_MAX        (64u * 1024 * 1024)

/*
 * Default threshold above which the data-set reader keeps a value as a
 * reference into the source instead of loading it (overridable per read).
 */
#define DCM_BULK_THRESHOLD_DEFAULT (256u * 1024)

/*
 * Nesting of sequences. Real objects (RT structures, SR trees) reach depth
 * 10 or so; the limit stops a hostile file from exhausting the stack or the
 * memory of the reader with nested undefined-length items.
 */
#define DCM_SEQUENCE_DEPTH_MAX    64

/* Items in one sequence: RT structure sets hold tens of thousands of contours. */
#define DCM_SEQUENCE_ITEMS_MAX    (1u << 20)

/*
 * Fragments of encapsulated pixel data: one per frame or more; multi-frame
 * ultrasound and tomosynthesis reach some thousands of frames.
 */
#define DCM_FRAGMENTS_MAX         (1u << 20)

/* Elements in one data set (items included); a CT header holds a few hundred. */
#define DCM_DATASET_ELEMENTS_MAX  (1u << 20)

/*
 * The File Meta Information group is small (a dozen elements); a group length
 * beyond this is corrupt.
 */
#define DCM_META_GROUP_MAX        (64u * 1024)

/*
 * Text values decoded to UTF-8 may grow (one GB18030 byte pair becomes three
 * UTF-8 bytes, ISO 2022 escapes vanish); decoded text is capped at this many
 * times its encoded length plus a little.
 */
#define DCM_CHARSET_GROWTH_MAX    4

/* Values of Specific Character Set (0008,0005): the standard allows a few. */
#define DCM_CHARSET_TERMS_MAX     8

/* Bytes of a deflated data set after inflation, against zip bombs: 4 GiB. */
#define DCM_INFLATE_MAX           (4ull * 1024 * 1024 * 1024)

/* --- DICOM writer (added for the writer) ------------------------------------ */

/*
 * Values not loaded in memory (bulk data kept as references into the source)
 * are copied to the output in pieces of at most this many bytes, so that
 * writing a multi-gigabyte multi-frame costs one megabyte of memory. A
 * multiple of 8, so that a byte-order change never splits a value.
 */
#define DCM_WRITE_CHUNK_MAX       (1024u * 1024)

/*
 * Output buffer of the deflater for Deflated Explicit VR Little Endian: the
 * compressed bytes are handed to the sink in pieces of this size.
 */
#define DCM_DEFLATE_CHUNK         (64u * 1024)

/* --- added for the DICOM reader (parser.c) --------------------------------- */

/*
 * Private Creator values remembered at once along the open data sets, to
 * resolve implicit-VR private tags. A real data set holds a handful; past
 * this many the extra ones are not remembered and their elements read as UN,
 * so a hostile file cannot grow the table without bound.
 */
#define DCM_PRIVATE_CREATORS_MAX  1024

/* --- added for charset.c ------------------------------------------------- */

/*
 * Bytes of decoded text allowed beyond DCM_CHARSET_GROWTH_MAX times the
 * encoded length, so that a value of one or two bytes still has room for a
 * replacement character.
 */
#define DCM_CHARSET_GROWTH_SLACK  16

/* --- metadata index (src/index) -------------------------------------------- */

/*
 * Sizes of the text fields of an index record, in bytes of UTF-8 without the
 * terminating NUL. DICOM bounds values in characters (PS3.5 6.2); a character
 * of a decoded value takes at most 4 bytes of UTF-8, so a 64-character LO or
 * PN group needs 256 bytes. Values longer than these are rejected by
 * index_put_instance, never truncated, so that what is matched is what came.
 */
/* UI: 64 ASCII characters (PS3.5 9.1). */
#define INDEX_UID_MAX             64
/* LO (Patient ID, issuer, descriptions): 64 characters. */
#define INDEX_LO_MAX              256
/* One PN component group (alphabetic, ideographic, phonetic): 64 characters. */
#define INDEX_PN_GROUP_MAX        256
/* SH (Accession Number, Study ID): 16 characters. */
#define INDEX_SH_MAX              64
/* CS (Modality, Patient's Sex, Body Part Examined): 16 ASCII characters. */
#define INDEX_CS_MAX              16
/* DA as YYYYMMDD; the archive normalises older forms before indexing. */
#define INDEX_DA_MAX              8
/* TM: HHMMSS.FFFFFF is 13 characters; 16 leaves room for stray padding. */
#define INDEX_TM_MAX              16
/* Blob keys: the blob store's own bound (STORE_KEY_MAX). */
#define INDEX_BLOB_KEY_MAX        512
/* Sending source: an AE title (16) or an import path below a watched folder. */
#define INDEX_SOURCE_MAX          1024
/*
 * ModalitiesInStudy as values separated by backslashes; 256 bytes hold 15
 * values of the longest CS, far more than any real study mixes. A longer
 * list is cut at a whole value in results (matching uses the series table).
 */
#define INDEX_MODALITIES_MAX      256
/* Terms in one query: C-FIND identifiers carry a few dozen keys at most. */
#define INDEX_QUERY_TERMS_MAX     64
/*
 * Studies a search takes in beside its institutions (index_query_spec
 * also_studies): those a doctor's open reading orders open, which the
 * concurrent-order cap keeps to a handful; a reviewer's queue is longer.
 */
#define INDEX_QUERY_STUDIES_MAX   256
/*
 * Values in one list-of-UIDs match (PS3.4 C.2.2.2.2). A C-MOVE of a whole
 * worklist names some hundreds; SQLite binds at most 32766 parameters.
 */
#define INDEX_QUERY_LIST_MAX      1024
/* Bytes of one query value: a list of 1024 UIDs with separators fits. */
#define INDEX_QUERY_VALUE_MAX     (INDEX_QUERY_LIST_MAX * (INDEX_UID_MAX + 1))
/*
 * SQLite connections for readers. Writers share one connection (SQLite lets
 * one writer in at a time anyway); readers in WAL mode run side by side, and
 * a handful covers the web and DIMSE workers of one process.
 */
#define INDEX_SQLITE_READERS_MAX  8
/* Prepared query statements cached per connection, keyed by their SQL text. */
#define INDEX_SQLITE_QUERY_CACHE  32
/* Instances in one index_put_instances batch (bulk import). */
#define INDEX_BATCH_MAX           10000

/* --- DICOM upper layer PDUs (PS3.8 section 9) -------------------------------- */

/*
 * Hard ceiling on the length field of any PDU the service reads: the header
 * reader refuses a larger one before a byte of its body is allocated or
 * read. Maximum Length negotiation (PS3.8 D.1) lets a peer declare up to
 * 2^32-1, but a peer must honour the maximum WE advertise, so a P-DATA-TF
 * longer than PDU_RECEIVE_MAX_DEFAULT is already a protocol violation; the
 * ceiling is higher only so that an operator may raise the advertised
 * maximum (dicom.max_pdu) without a rebuild. 16 MiB per PDU and association
 * is what a burst of hostile peers can make the service hold.
 */
#define PDU_LENGTH_MAX            (16u * 1024 * 1024)

/*
 * The Maximum Length the service advertises by default (overridable with
 * dicom.max_pdu, up to PDU_LENGTH_MAX). Past some tens of kilobytes the
 * per-PDU cost of a read and a header is lost in the noise; 1 MiB keeps a
 * slice of pixel data per read while bounding the receive buffer of each
 * association at a size a few hundred associations can afford.
 */
#define PDU_RECEIVE_MAX_DEFAULT   (1024u * 1024)

/*
 * The largest PDU we send, whatever the peer allows: a peer advertising 0
 * (no limit) or gigabytes gains nothing from PDUs larger than this, and each
 * PDU we build costs its size in memory.
 */
#define PDU_SEND_MAX              (1024u * 1024)

/*
 * A-ASSOCIATE-RQ/-AC PDUs arrive before any length is negotiated. One that
 * stays within the limits below is at most 128 contexts x (8 + 68 + 64 x 68)
 * bytes plus a user information item of at most 65539 bytes: under 640 KiB.
 */
#define PDU_ASSOCIATE_MAX         (1024u * 1024)

/*
 * Presentation contexts in one association: IDs are the odd numbers 1-255
 * (PS3.8 9.3.2.2), so a conforming peer never proposes more than 128.
 */
#define PDU_CONTEXTS_MAX          128

/*
 * Transfer syntaxes proposed in one presentation context. PS3.6 lists some
 * fifty (retired ones included); an SCU that proposes every one it knows
 * stays under this.
 */
#define PDU_TS_PER_CONTEXT_MAX    64

/*
 * Sub-items of one User Information item (skipped unknown ones included):
 * at most one role selection, one extended and one common extended
 * negotiation per SOP class (3 x 128), plus the few single ones.
 */
#define PDU_USER_ITEMS_MAX        512

/*
 * Related General SOP Classes listed in one SOP Class Common Extended
 * Negotiation sub-item (PS3.7 D.3.3.6): real lists name a handful.
 */
#define PDU_RELATED_CLASSES_MAX   64

/*
 * Primary and secondary fields of User Identity Negotiation (PS3.7 D.3.3.7)
 * and its server response. The wire caps them with 2-byte lengths; a SAML
 * assertion with its signature and certificates reaches tens of kilobytes,
 * so the whole field is accepted; the constant names the bound every check
 * uses.
 */
#define PDU_USER_IDENTITY_MAX     65535

/*
 * PDVs in one P-DATA-TF: each costs a descriptor when decoded. Peers send
 * one or two per PDU; 4096 still lets a 16 MiB PDU be cut in 4 KiB PDVs.
 */
#define PDU_PDVS_MAX              4096

/* --- pixel pipeline (src/pixel: pixel.c and the decoders) ------------------- */

/*
 * Bytes of one decoded frame, and of the stored bytes of one frame gathered
 * from its fragments. A 4096 x 4096 RGB frame of 32-bit samples is 192 MiB;
 * whole-slide tiles and breast tomosynthesis frames stay far below. A
 * codestream that claims more is refused before anything is allocated.
 */
#define PX_FRAME_BYTES_MAX        (256u * 1024 * 1024)

/*
 * Entries of one palette colour LUT once its segments are expanded (PS3.3
 * C.7.9): the descriptor cannot address more than 65536, so a segmented
 * table that expands past that is corrupt (or a decompression bomb).
 */
#define PX_PALETTE_ENTRIES_MAX    65536u

/*
 * Number of Frames accepted (PS3.3 C.7.6.6): the IS value can say up to
 * 2^31 - 1; multi-frame objects in practice stay in the thousands.
 */
#define PX_FRAMES_MAX             (1u << 24)

/* --- HTTP layer (src/http: server, multipart, accept) ---------------------- */

/*
 * Bytes of one request's header block (request line and headers). Browsers
 * send a few kilobytes; a bearer token and cookies stay well under 16 KiB.
 * Overridable with http.max_header_bytes. Beyond it: 431.
 */
#define HTTP_HEADER_BYTES_MAX       (16u * 1024)

/*
 * Bytes of a request target. A QIDO-RS query naming many UIDs reaches a few
 * kilobytes; 8 KiB is what common proxies pass. Beyond it: 414.
 */
#define HTTP_URL_MAX                (8u * 1024)

/*
 * Request bodies per route class: small (JSON API, forms) and large
 * (STOW-RS, uploads of whole studies). Overridable with http.max_body_small
 * and http.max_body_large. Beyond them: 413, decided from Content-Length
 * before a byte of the body is read, or as soon as a chunked body passes it.
 */
#define HTTP_BODY_SMALL_MAX         (1024u * 1024)
#define HTTP_BODY_LARGE_MAX         (64ull * 1024 * 1024 * 1024)

/*
 * Body bytes read and dropped after a request has failed (body too large,
 * a handler that refused it) so that the client still gets the error
 * status; past this the connection is closed instead.
 */
#define HTTP_BODY_DISCARD_MAX       (1024u * 1024)

/* Path parameters in one route pattern ({study}, {series}, ...). */
#define HTTP_ROUTE_PARAMS_MAX       8

/* Query parameters kept per request: a QIDO-RS query has a few dozen. */
#define HTTP_QUERY_PARAMS_MAX       256

/*
 * Memory libmicrohttpd may use per connection for the header block and its
 * read buffer; must hold HTTP_HEADER_BYTES_MAX plus room for body chunks.
 */
#define HTTP_CONNECTION_MEMORY      (64u * 1024)

/* Idle seconds before a keep-alive connection is closed. */
#define HTTP_CONNECTION_TIMEOUT_S   60

/*
 * JSON bodies smaller than this are sent as they are: gzip's header and
 * trailer would make them larger.
 */
#define HTTP_GZIP_MIN_BYTES         256

/*
 * Distinct metric series (name plus labels) in the process-wide registry;
 * a label set that grows without bound (a UID as label) is refused past it.
 */
#define HTTP_METRICS_SERIES_MAX     4096

/*
 * Boundary of a multipart body: RFC 2046 allows 1-70 characters; some
 * clients send longer ones, so the reader accepts up to this many.
 */
#define HTTP_MULTIPART_BOUNDARY_MAX 200

/*
 * Parts in one multipart request: a STOW-RS of a whole-body CT or a
 * tomosynthesis series sends some thousands of instances. Overridable per
 * parser.
 */
#define HTTP_MULTIPART_PARTS_MAX    100000

/* Header lines in one part: Content-Type, -Location, -ID, -Length, a few more. */
#define HTTP_MULTIPART_HEADERS_MAX  32

/* Bytes of one part's header block. */
#define HTTP_MULTIPART_HEADER_BYTES_MAX (8u * 1024)

/*
 * Transport padding (spaces and tabs) allowed after a boundary delimiter
 * (RFC 2046 5.1.1). Senders add none; the bound keeps the look-ahead small.
 */
#define HTTP_MULTIPART_PADDING_MAX  64

/*
 * Body bytes the streaming parser examines at once; a part's data reaches
 * its callback in pieces of at most this size.
 */
#define HTTP_MULTIPART_WINDOW       (64u * 1024)

/* Media ranges kept from one Accept header (each transfer-syntax counts). */
#define HTTP_ACCEPT_ITEMS_MAX       64

/* --- DICOM network service (src/net: assoc, dimse, scp, scu) ---------------- */

/*
 * Bytes of one DIMSE command set once its PDV fragments are put together
 * (PS3.7 9.3). A command set holds a dozen short elements, some hundreds of
 * bytes; only data sets are large, and those are streamed, never gathered.
 */
#define DIMSE_COMMAND_MAX         (64u * 1024)

/*
 * ARTIM (PS3.8 9.1.5), default for dicom.artim_timeout in seconds: how long
 * a connection may stay open before its A-ASSOCIATE-RQ arrives, and how long
 * we wait for a peer to close after we rejected, released or aborted.
 */
#define ASSOC_ARTIM_DEFAULT_S     30

/*
 * Default for dicom.idle_timeout in seconds: an established association
 * silent this long is aborted. Modalities pause between series, so this is
 * longer than ARTIM; a silent peer still cannot hold a thread for ever.
 */
#define ASSOC_IDLE_DEFAULT_S      300

/* Upper bound of both timeouts, in seconds (one day): a typo, not a choice. */
#define ASSOC_TIMEOUT_MAX_S       86400

/*
 * The smallest Maximum Length we accept from the configuration
 * (dicom.max_pdu): PS3.8 D.1 lets a peer send PDUs down to this size, and
 * below it every PDV would carry more header than data.
 */
#define ASSOC_MAX_PDU_MIN         4096u

/*
 * Associations served at once by default (dicom.max_associations), each by
 * its own thread; and the ceiling the configuration may raise it to. With
 * the receive and send buffers bounded by PDU_RECEIVE_MAX_DEFAULT and
 * PDU_SEND_MAX, 1024 associations stay within a few gigabytes.
 */
#define SCP_ASSOCIATIONS_DEFAULT  64
#define SCP_ASSOCIATIONS_MAX      1024

/*
 * Extra short-lived threads that read the A-ASSOCIATE-RQ of callers beyond
 * the limit only to answer them A-ASSOCIATE-RJ "local limit exceeded"
 * (PS3.8 9.3.4); past these, extra connections are closed at once.
 */
#define SCP_REJECT_THREADS_MAX    16

/*
 * Stack of each association thread. The handlers keep their buffers on the
 * heap, so 256 KiB is ample and 64 associations cost 16 MiB of stack.
 */
#define SCP_THREAD_STACK          (256u * 1024)

/*
 * Connections the kernel queues before the accept loop takes them: a burst
 * of modalities starting together stays below it.
 */
#define SCP_LISTEN_BACKLOG        128

/* Seconds the server waits for open associations to end on shutdown. */
#define SCP_SHUTDOWN_DEADLINE_S   10

/* Remote AEs in the configuration ([ae.NAME] sections). */
#define SCP_REMOTE_AES_MAX        4096

/* Default for dicom.connect_timeout in seconds: an SCU connecting out. */
#define SCU_CONNECT_TIMEOUT_S     10

/* --- archive (src/archive) --------------------------------------------------- */

/*
 * Bytes of an instance's header (everything before Pixel Data) an ingest
 * keeps in memory to extract its index record. CT and MR headers with their
 * private groups take tens of kilobytes; 4 MiB leaves room for large
 * sequences while bounding what hundreds of simultaneous C-STORE
 * associations can make the archive hold. Past it the index record is taken
 * from the first 4 MiB (the attributes it needs, groups 0008 to 0028, come
 * first) and the rest is streamed to the blob without being kept.
 */
#define ARCHIVE_HEADER_MAX        (4u * 1024 * 1024)

/*
 * The header is parsed again each time the bytes kept have doubled since
 * the last try, starting here, so that a header arriving in small PDVs costs
 * a few parses and not one per PDV.
 */
#define ARCHIVE_HEADER_FIRST_TRY  (4u * 1024)

/* Bytes read from a file or a blob per call while ingesting or repairing. */
#define ARCHIVE_READ_CHUNK        (256u * 1024)

/* Index rows checked per query page by archive_repair. */
#define ARCHIVE_REPAIR_PAGE       1000

/* Directory levels below the store root that archive_repair walks. */
#define ARCHIVE_REPAIR_DEPTH_MAX  8

/* --- DICOMweb (src/dicomweb) ------------------------------------------------ */

/*
 * Attributes a QIDO-RS request may name with includefield (PS3.18 8.3.4.3).
 * The service returns at most some forty attributes per level, so a request
 * naming more is hostile or mistaken.
 */
#define DWEB_INCLUDE_MAX          128

/* Bytes of the Warning header that lists the query keys a search ignored. */
#define DWEB_WARNING_MAX          512

/*
 * Results one QIDO-RS response holds at most, whatever limit the client
 * asks (PS3.18 8.3.4.4 lets the origin server cap it with a Warning): a
 * study-level row is about 1.5 KB of JSON, so a page stays under 16 MB.
 */
#define DWEB_QIDO_ROWS_MAX        10000

/* Bytes of a URL the service builds (RetrieveURL, BulkDataURI). */
#define DWEB_URL_MAX              2048

/*
 * Bytes read from a blob per producer call when WADO-RS streams instances:
 * one read per call keeps a slow client from making a request hold more.
 */
#define DWEB_STREAM_CHUNK         (256u * 1024)

/* Frame numbers one WADO-RS frames request may list (PS3.18 10.4.1.1.6). */
#define DWEB_FRAMES_MAX           1024

/* Instances one STOW-RS response reports; more parts fail the request. */
#define DWEB_STOW_INSTANCES_MAX   HTTP_MULTIPART_PARTS_MAX

/*
 * Bytes of metadata answers (PS3.18 10.4.1.1.2) the service keeps in memory,
 * keyed by their ETag, so that a viewer opening a study again is answered
 * without reading its blobs. A CT series of 500 slices is about 6 MB of
 * JSON: 256 MB holds a working day's studies on one reading station.
 */
#define DWEB_METADATA_CACHE_MAX   (256u * 1024 * 1024)

/* The largest single answer kept in that cache; larger ones are streamed each time. */
#define DWEB_METADATA_ENTRY_MAX   (32u * 1024 * 1024)

/* Answers the cache holds at most, whatever their size. */
#define DWEB_METADATA_ENTRIES_MAX 1024

/* --- DICOMweb rendering (src/dicomweb/render.c, wado_uri.c) --------------- */

/*
 * The largest viewport a rendered or thumbnail request may ask for (PS3.18
 * 8.3.5.1.3), per side: a picture of 4096 x 4096 RGB is 48 MB, beyond what
 * a browser shows, and bounds what one request makes the server allocate.
 */
#define DWEB_RENDER_VIEWPORT_MAX  4096u

/*
 * Parts of one rendered series or study answer (multipart/related of one
 * image per instance): a large CT series is about 2000 slices.
 */
#define DWEB_RENDER_PARTS_MAX     4096u

/*
 * Bytes of a cached thumbnail read back from the blob store: a 128 x 128
 * JPEG is about 5 KB; one larger than this is not ours and is re-rendered.
 */
#define DWEB_THUMB_BYTES_MAX      (4u * 1024 * 1024)

/*
 * Instances of a study or series tried in turn for its thumbnail, so that a
 * study whose first instances hold no pixels (a report, a plan) still gets
 * a picture without every instance of a large study being read.
 */
#define DWEB_THUMB_TRIES_MAX      32u

/* --- query/retrieve (net/qr.c, PS3.4 C.4) ------------------------------- */

/*
 * Bytes of a C-FIND, C-MOVE or C-GET identifier the SCP gathers: a query of
 * every key PS3.4 C.6 lists is a few kilobytes; more is not a query.
 */
#define QR_IDENTIFIER_MAX         (64u * 1024)

/* Elements of one identifier the SCP considers (keys and return keys). */
#define QR_KEYS_MAX               256

/*
 * Instances one C-MOVE or C-GET retrieves: the sub-operation counts of
 * PS3.7 are 16-bit, so a larger retrieve could not report its progress.
 */
#define QR_RETRIEVE_MAX           65535u

/* Patients one patient-level C-FIND groups its studies into. */
#define QR_PATIENTS_MAX           10000

/* Bytes read from a stored blob per P-DATA sent by a C-STORE sub-operation. */
#define QR_STREAM_CHUNK           (64u * 1024)

/*
 * Bytes of an instance loaded whole to change its syntax between Explicit
 * and Implicit VR Little Endian for a peer that takes only the other.
 */
#define QR_TRANSCODE_MAX          (256u * 1024 * 1024)

/* --- static files (src/http/static.c): the viewer's build ------------------- */

/*
 * Bytes of a static file's path on disk (the root plus the request path);
 * Linux's PATH_MAX, so every name the kernel accepts fits.
 */
#define HTTP_STATIC_PATH_MAX      4096

/*
 * Directories above the cloudpacs binary searched for the default root of
 * the static files: the binary sits at <repo>/<build>/src/cli/cloudpacs.
 */
#define HTTP_STATIC_SEARCH_UP     4

/* --- study completion (src/archive/completion.c) ---------------------------- */

/*
 * Studies one completion pass announces at most; the rest wait for the next
 * pass, a few seconds later, so that one pass holds little memory.
 */
#define COMPLETION_BATCH_MAX      256

/* The default quiet time after which a study is announced complete. */
#define COMPLETION_QUIET_DEFAULT_S 60

/* --- DICOM over TLS (src/net/tls.c) ------------------------------------------ */

/* Bytes of the GnuTLS priority string once the version limits are added. */
#define TLS_PRIORITY_MAX          512

/* --- Redis (src/kv) ----------------------------------------------------------- */

/*
 * Connections one kv opens at most. Commands take well under a millisecond,
 * so a connection is busy only briefly; 16 serve the worker threads of one
 * process without making Redis hold a connection per thread.
 */
#define KV_POOL_MAX               16

/*
 * Default time one command may take, in milliseconds. Redis answers in
 * microseconds; two seconds means it is stalled (a fork for a rewrite on a
 * starved host), and a caller should fail rather than hang.
 */
#define KV_COMMAND_TIMEOUT_MS     2000

/*
 * Time a connect may take, in milliseconds: a local or same-datacentre
 * Redis accepts at once, so a second means it is down or unreachable.
 */
#define KV_CONNECT_TIMEOUT_MS     1000

/*
 * Back-off after a failed connect, shared by the pool: calls made within it
 * fail at once. It starts short, so that a restarted Redis is found again
 * quickly, and doubles up to the maximum, so that a Redis that stays away
 * costs one connect attempt every few seconds, not one per call.
 */
#define KV_RECONNECT_MIN_MS       100
#define KV_RECONNECT_MAX_MS       5000

/* Bytes of a key built by kv_key, prefix included: keys name ids and UIDs. */
#define KV_KEY_MAX                256

/*
 * Time the embedded redis-server has to answer PING after it was started,
 * in milliseconds: it starts in milliseconds, but loading a large
 * append-only file after a crash can take seconds.
 */
#define REDISD_START_TIMEOUT_MS   10000

/*
 * Time the embedded redis-server has to exit after SHUTDOWN (then after
 * SIGTERM), in milliseconds, before it is killed: it flushes its
 * append-only file, which takes well under a second.
 */
#define REDISD_STOP_TIMEOUT_MS    5000

/*
 * Waits between two restarts of an embedded redis-server that keeps dying,
 * in milliseconds: the first is short, so that one crash costs a blink; each
 * next one doubles up to the maximum, so that a crash loop costs a start
 * every ten seconds, not a busy loop. A server that ran longer than the
 * maximum starts the count again.
 */
#define REDISD_RESTART_MIN_MS     100
#define REDISD_RESTART_MAX_MS     10000

/* --- identity store (src/auth/credential.c, directory.c) -------------------- */

/*
 * Characters of a base32 TOTP secret accepted (DIRECTORY_SECRET_MAX), and
 * the bytes it decodes to at most: apps use 10 to 32 bytes of key; RFC 4226
 * asks for at least 16, and 40 bytes is what 64 characters hold.
 */
#define CRED_TOTP_SECRET_TEXT_MAX 64
#define CRED_TOTP_KEY_MAX         40

/*
 * Bytes of a secret sealed at rest (a TOTP secret is 32 characters) and
 * characters of its sealed base64 form: 24 bytes of nonce and 16 of tag
 * around it, four characters for every three bytes.
 */
#define CRED_SEAL_PLAIN_MAX       1024
#define CRED_SEAL_TEXT_MAX        ((24 + CRED_SEAL_PLAIN_MAX + 16 + 2) / 3 * 4)

/*
 * Qualifications of one radiologist (modality x body part pairs): a
 * general radiologist lists some dozens; thousands would be a script gone
 * wrong.
 */
#define DIRECTORY_QUALIFICATIONS_MAX 1024

/*
 * Rows one directory listing gathers before its callbacks run (users,
 * institutions, tokens, AEs, contracts): a national network of reading
 * centres has tens of thousands of users.
 */
#define DIRECTORY_ROWS_MAX        (1u << 20)

/* Institution ids a user listing may filter on (one subtree, in practice). */
#define DIRECTORY_FILTER_IDS_MAX  10000

/* Characters of a presented API token ("cpat_" + 43): longer is not one. */
#define DIRECTORY_TOKEN_TEXT_MAX  256

/*
 * Levels of the institution tree walked: centre > hospital > clinic >
 * department is four; the bound stops a walk of a damaged tree.
 */
#define DIRECTORY_DEPTH_MAX       64

/*
 * Milliseconds a directory statement waits for another writer of the same
 * database file (the index, the audit trail, another process).
 */
#define DIRECTORY_BUSY_TIMEOUT_MS 5000

/* --- audit trail (src/auth/audit.c, PS3.15 A.5) ------------------------------ */

/*
 * Records queued for the audit writer thread. A burst of WADO requests on a
 * busy day queues some hundreds between two commits; past this audit_write
 * waits, since dropping a record is not allowed. A record is about 1 KiB,
 * so the queue costs at most 4 MiB.
 */
#define AUDIT_QUEUE_MAX           4096

/*
 * Milliseconds the writer waits for more records before it commits what it
 * holds: a commit with synchronous=FULL costs an fsync, so records are
 * grouped, and 50 ms is below what a person notices in audit_query.
 */
#define AUDIT_FLUSH_MS            50

/* Records committed in one transaction; the writer commits at once when this many wait. */
#define AUDIT_BATCH_MAX           256

/* Records one audit_query call returns when the filter names no limit. */
#define AUDIT_QUERY_DEFAULT       100

/* Most records one audit_query call returns (a page is held in memory). */
#define AUDIT_QUERY_MAX           1000

/*
 * Milliseconds a connection of the audit trail waits for another process
 * (the server, a CLI) holding the database's write lock.
 */
#define AUDIT_BUSY_TIMEOUT_MS     5000

/*
 * Back-off of a failed audit commit, in milliseconds: the first retry
 * waits AUDIT_RETRY_FIRST_MS, each next one twice as long up to
 * AUDIT_RETRY_MAX_MS, so that a full disk is retried without a busy loop.
 */
#define AUDIT_RETRY_FIRST_MS      10
#define AUDIT_RETRY_MAX_MS        1000

/*
 * Attempts at committing a batch while audit_close waits: closing must end,
 * so past these the records are given up and an error is logged for each
 * batch (audit.dropped) instead of retrying for ever.
 */
#define AUDIT_CLOSE_RETRIES       20

/* --- sessions and cached principals (src/auth/session.c) --------------------- */

/*
 * Defaults of session_config (each overridable there): a session ends after
 * half an hour unused or twelve hours in all, a working day; five failed
 * logins within fifteen minutes lock the name for fifteen minutes, which
 * slows guessing to a few tries an hour without locking a user out for long.
 */
#define SESSION_IDLE_DEFAULT_S        (30u * 60)
#define SESSION_ABSOLUTE_DEFAULT_S    (12u * 3600)
#define SESSION_LOCK_AFTER_DEFAULT    5u
#define SESSION_LOCK_WINDOW_DEFAULT_S (15u * 60)
#define SESSION_LOCK_DEFAULT_S        (15u * 60)

/*
 * How old a cached principal may be before its profile_version is checked
 * against the directory again: a change of rights reaches every session
 * within this many seconds even if nobody calls session_invalidate, while a
 * busy session costs the database one cheap query per period.
 */
#define SESSION_PROFILE_CHECK_S       5

/*
 * Lifetime of a cached principal in Redis: it is rebuilt from the directory
 * after that, so principals of users who left do not pile up.
 */
#define SESSION_PROFILE_TTL_S         3600

/*
 * Lifetime of a cached API-token principal: the longest a revoked or
 * expired API token keeps working, traded against a database query for
 * every request of a busy gateway.
 */
#define SESSION_TOKEN_CACHE_S         30

/* A TOTP secret begun but not confirmed is forgotten after ten minutes. */
#define SESSION_TOTP_PENDING_S        600

/*
 * How long the last TOTP step used is remembered: longer than the window a
 * code is accepted in (three 30-second steps), so that no code works twice.
 */
#define SESSION_TOTP_USED_S           120

/*
 * Grants of one principal: the institutions of its own subtree plus those
 * its contracts open. A reading centre's radiologist reads for some dozens
 * of hospitals with a few clinics each; a principal past this is refused
 * (CP_ERR_LIMIT) rather than cached at any size.
 */
#define SESSION_GRANTS_MAX            4096

/* Contracts of one user looked at when building a principal. */
#define SESSION_CONTRACTS_MAX         1024

/*
 * Bytes of a bearer token looked at: session and API tokens are under 64;
 * anything much longer is not ours and is refused before it is hashed.
 */
#define SESSION_TOKEN_MAX             256

/*
 * Bytes of a cached principal's JSON: a principal at SESSION_GRANTS_MAX
 * grants with full modality lists stays under this.
 */
#define SESSION_PROFILE_JSON_MAX      (1024u * 1024)

/*
 * Sessions ended by one DEL in session_end_user: a user's set of sessions
 * has no bound of its own (each login adds one), so it is deleted in
 * batches that keep one command small.
 */
#define SESSION_END_BATCH             256

/*
 * Sessions a process remembers having resolved, and for how long (ms): a
 * viewer opening a study sends hundreds of requests in a second, and each
 * would otherwise cost two Redis round trips. A session ended in another
 * process therefore still works here for at most SESSION_LOCAL_MS.
 */
#define SESSION_LOCAL_SLOTS           256
#define SESSION_LOCAL_MS              250

/* --- the REST API (src/api) ---------------------------------------------------- */

/*
 * Bytes of a JSON body of an /api/ route: logins, users, contracts and
 * qualification lists are well under a kilobyte; 64 KiB leaves room and
 * bounds what a request can make the server parse (413 above it).
 */
#define API_BODY_MAX              (64u * 1024)

/*
 * Peers remembered for rate-limiting the audit records of rejected tokens:
 * a flood from many addresses then costs at most one record per entry per
 * interval, and the table stays a few kilobytes.
 */
#define API_AUTH_FAIL_PEERS       64

/* Seconds between two audit records of rejected tokens from one peer. */
#define API_AUTH_FAIL_INTERVAL_S  10

/* Records one GET /api/audit page holds at most, and by default. */
#define API_AUDIT_PAGE_MAX        500
#define API_AUDIT_PAGE_DEFAULT    100

/*
 * Records fetched at once while streaming GET /api/audit/export: the
 * export of a whole trail then holds one page of records in memory.
 */
#define API_AUDIT_EXPORT_PAGE     200

/* Qualifications one user holds at most (modality and body part pairs). */
#define API_QUALIFICATIONS_MAX    256

/* --- DICOMweb authorisation and audit (src/dicomweb/dicomweb.c) ----------- */

/*
 * Slots of the table that keeps a viewer's frame, rendered and thumbnail
 * requests from writing an audit record each: one slot per (session,
 * study) seen lately; a collision only costs an extra record. 4096 slots
 * (64 KiB) cover far more readers than one server has at once.
 */
#define DWEB_AUDIT_VIEW_SLOTS     4096u

/*
 * Seconds during which a session's further frame requests of a study it
 * was already recorded opening are not recorded again: a reader scrolling
 * a CT asks for hundreds of frames within a minute or two.
 */
#define DWEB_AUDIT_VIEW_WINDOW_S  300

/*
 * Bytes of a QIDO-RS query string kept in its audit record (the record's
 * object id holds 128): the rest is cut.
 */
#define DWEB_AUDIT_QUERY_MAX      128

/* --- DICOM service authorisation and audit (src/cli/serve_dimse.c) -------- */

/*
 * Studies one association collects C-STORE counts for before writing their
 * audit records (one per study, normally when the association ends): a
 * sender of more studies than this on one association gets its records
 * written in batches of this many, so the memory per association stays
 * bounded (about 40 KiB).
 */
#define SERVE_DIMSE_AUDIT_STUDIES_MAX 256

/* --- SMB and folder intake, export to shares (src/ingest) ----------------- */

/* Bytes read from a share per call: large enough for SMB2 credits to stream. */
#define INGEST_CHUNK_BYTES        (256u * 1024u)

/* Folder levels a scan descends; deeper trees are a loop or a mistake. */
#define INGEST_SCAN_DEPTH_MAX     32

/*
 * Files one scan of a source considers: the stability tracker holds one
 * entry per file, so a share of a million files does not pin a gigabyte.
 * Files past it are seen on a later scan, once the first ones are taken.
 */
#define INGEST_SCAN_FILES_MAX     100000u

/* Bytes of a path below a source's root (SMB allows 32767 UTF-16 units). */
#define INGEST_PATH_MAX           4096

/* Entries of one ZIP archive taken at most: a ZIP bomb of empty entries. */
#define INGEST_ZIP_ENTRIES_MAX    100000u

/* Bytes of one ZIP entry once inflated: the largest single instance we take. */
#define INGEST_ZIP_ENTRY_MAX      (4ull * 1024 * 1024 * 1024)

/* Back-off of a share that is down, and of a failed export, in seconds. */
#define INGEST_BACKOFF_MIN_S      1
#define INGEST_BACKOFF_MAX_S      60

/* Bytes of one field of an export path once sanitised (most file systems: 255). */
#define INGEST_FIELD_MAX          100

/* [intake.*] and [export.*] sections at most: one thread each. */
#define INGEST_SOURCES_MAX        64
#define INGEST_EXPORTS_MAX        64

/* Bytes of a credentials file: three short lines. */
#define INGEST_CREDENTIALS_MAX    4096

/*
 * Files one intake source takes at once (its `jobs` key), each with its own
 * SMB and ledger connection: every file waits on its blob's fsyncs and its
 * index commit, and four at once overlap those waits (the index groups the
 * commits) while keeping a clinic's share lightly loaded.
 */
#define INGEST_JOBS_DEFAULT       4
#define INGEST_JOBS_MAX           16

/* --- reading orders (src/consult) ------------------------------------------ */

/* Bytes of an order's clinical notes: a referral's few paragraphs. */
#define ORDER_NOTES_MAX           4000

/* Bytes of the reason given back with a declined, returned or rejected order. */
#define ORDER_REASON_MAX          500

/* Orders one listing returns when the caller sets no limit. */
#define ORDER_LIST_DEFAULT        100

/* --- reports, the report SR and reading statistics (src/consult) ---------- */

/* Bytes of a report's findings or impression: a long CT report is a few KiB. */
#define REPORT_TEXT_MAX           65536

/* How long a report call waits for the index database's write lock. */
#define REPORT_BUSY_TIMEOUT_MS    5000

/* The edit lock's life when the configuration sets none: two minutes of typing. */
#define REPORT_LOCK_DEFAULT_S     120

/* Orders one statistics run reads at most, so a report over years stays bounded. */
#define STATS_ORDERS_MAX          200000

/* Orders fetched per page while statistics are gathered. */
#define STATS_PAGE                500

/* Groups (doctors, institutions, days) one statistics run returns at most. */
#define STATS_GROUPS_MAX          10000

/*
 * Characters the report SR keeps of an SH, an LO and a whole PN value (three
 * component groups of 64 and two '='): the VRs' limits in PS3.5 table 6.2-1,
 * applied to the index and directory texts it copies.
 */
#define SR_SH_CHARS_MAX           16
#define SR_LO_CHARS_MAX           64
#define SR_PN_CHARS_MAX           (3 * 64 + 2)

/* Bytes of a report SR file: two texts of REPORT_TEXT_MAX plus the headers. */
#define SR_FILE_MAX               (2 * REPORT_TEXT_MAX + 65536)

/* --- live updates and the consult web service (src/http, src/consult/events, src/api) --- */

/*
 * Bytes an event stream may have queued for a client that does not read:
 * a few hundred events; past it the client is dropped rather than
 * buffered without end.
 */
#define HTTP_EVENTS_QUEUE_MAX     (64u * 1024)

/* Seconds between the comment lines that keep an idle event stream open through proxies. */
#define HTTP_EVENTS_KEEPALIVE_S   15

/* Bytes of one event (its id, name and data lines) before it is refused. */
#define HTTP_EVENTS_EVENT_MAX     (16u * 1024)

/* Entries kept in the Redis stream of consult events (XADD MAXLEN ~). */
#define EVENTS_STREAM_MAXLEN      10000

/* Live event subscribers of one process: each is an open connection. */
#define EVENTS_SUBSCRIBERS_MAX    1024

/* Milliseconds one XREAD of the events reader blocks, under KV_COMMAND_TIMEOUT_MS. */
#define EVENTS_READ_BLOCK_MS      1000

/* Stream entries one XREAD returns at most. */
#define EVENTS_READ_COUNT         100

/*
 * Entries one reconnecting event stream is sent again after its
 * Last-Event-ID (events_subscribe_from); past that it is told to reload.
 * 200 entries of about 230 bytes stay within HTTP_EVENTS_QUEUE_MAX.
 */
#define EVENTS_REPLAY_MAX         200

/* Orders in one /api/pool answer at most (dispatch's visible_max is lower). */
#define API_POOL_MAX              50

/* Orders in one /api/orders page at most. */
#define API_ORDERS_PAGE_MAX       500

/*
 * Pages of API_ORDERS_PAGE_MAX orders one /api/orders call reads while it
 * looks for those the caller may see; past them it answers what it found
 * with next_after, so that a caller who sees few orders of a large table
 * still gets quick answers.
 */
#define API_ORDERS_SCAN_PAGES     20

/* Changes of the index log the automatic-order watcher reads per pass. */
#define CONSULT_CHANGES_PAGE      500

/* Automatic order rules ([order_rule.NAME] sections) one server reads at most. */
#define CONSULT_RULES_MAX         64

/*
 * Orders awaiting review or release read when a reviewer's search looks for
 * the studies of its centre's queue (INDEX_QUERY_STUDIES_MAX kept at most).
 */
#define CONSULT_REVIEW_SCAN       2000

/* --- the dispatch engine (src/consult/dispatch.c) --------------------------- */

/*
 * Milliseconds the timer lease (disp:leader) lives in Redis without renewal:
 * each tick (every second) renews it, so a dead leader is replaced within
 * five seconds while a slow tick does not lose it.
 */
#define DISPATCH_LEASE_MS         5000

/*
 * Seconds a doctor's qualifications and contracts are cached by the engine:
 * a revoked contract stops new claims within this, and a burst of grabs by
 * many doctors costs one directory read each instead of one per grab.
 */
#define DISPATCH_DOCTOR_CACHE_S   5

/* Doctors whose eligibility one engine caches at once. */
#define DISPATCH_DOCTOR_CACHE_MAX 512

/* Pool entries one round trip reads while looking for visible orders. */
#define DISPATCH_POOL_PAGE        64

/* Timers one tick fires; the rest wait for the next second. */
#define DISPATCH_TIMERS_PER_TICK  256

/* Seconds before an order nobody could be found for is tried again. */
#define DISPATCH_FALLBACK_RETRY_S 60

/* Open orders read from SQL per page while rebuilding Redis. */
#define DISPATCH_REBUILD_PAGE     500

/* --- cloud film: share links and the report PDF (src/film) ----------------- */

/*
 * Wrong second-factor answers (birth date, last four phone digits) after
 * which each further try of a link, or from a peer, must wait: the answers
 * have little entropy, so throttling is what keeps them from being guessed.
 */
#define SHARE_DELAY_AFTER         5

/* The first wait after SHARE_DELAY_AFTER wrong answers; it doubles per wrong answer. */
#define SHARE_DELAY_BASE_MS       1000

/* The longest wait between two tries before the block. */
#define SHARE_DELAY_MAX_MS        60000

/* Wrong answers after which a link (or a peer) is blocked for SHARE_BLOCK_S. */
#define SHARE_BLOCK_AFTER         10

/* Seconds a block lasts, and the window wrong answers are counted in. */
#define SHARE_BLOCK_S             3600

/* Seconds a verified share session lives (the patient proves who they are again after). */
#define SHARE_SESSION_S           1800

/* Default life of a link made for the printed report: 30 days. */
#define SHARE_TTL_DEFAULT_S       (30 * 86400)

/*
 * Longest life of any link: the printed QR code lives as long as the
 * paper, and outpatient records are kept 15 years (domain.md 1.1).
 */
#define SHARE_TTL_MAX_S           (15LL * 366 * 86400)

/* Default life of a link a patient makes for another doctor: 7 days. */
#define SHARE_CHILD_TTL_DEFAULT_S (7 * 86400)

/* Links one share_list call hands out at most. */
#define SHARE_LIST_MAX            500

/* Bytes of a second-factor answer as typed ("1980-05-17", "5678"). */
#define SHARE_ANSWER_MAX          32

/* Bytes of a share URL (the base URL and the token) printed in a QR code. */
#define SHARE_URL_MAX             512

/* Milliseconds a busy index database is waited for by the share store. */
#define SHARE_BUSY_TIMEOUT_MS     5000

/* Pages of one report PDF: a report is a page or two; more is a runaway text. */
#define PDF_PAGES_MAX             20

/* Bytes of one report PDF (fonts are subset); it goes into a DICOM instance too. */
#define PDF_FILE_MAX              (32u * 1024 * 1024)

/* Bytes of each text a report PDF prints (findings, impression, names): a report's text. */
#define PDF_TEXT_MAX              (64u * 1024)

/*
 * Lines (LF) of one text of a report PDF: PDF_PAGES_MAX pages hold about
 * a thousand, so more is refused before pango lays it all out only to fail.
 */
#define PDF_LINES_MAX             1500

/* --- cloud film over HTTP (api/api_film.c) -------------------------------------- */

/* Instances of a study listed for the patient's page; a study scope's stack viewer. */
#define API_FILM_INSTANCES_MAX    5000

/* Child links whose views are listed with their parent's. */
#define API_FILM_CHILDREN_MAX     64

/* Audit records read per link for the list of views. */
#define API_FILM_VIEWS_MAX        200

/* Days a patient's link for another doctor may last (cut to the parent's expiry). */
#define API_FILM_CHILD_DAYS_MAX   365

#endif
