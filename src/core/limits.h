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

#endif
