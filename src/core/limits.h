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

#endif
