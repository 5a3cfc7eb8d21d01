/*
 * doc_bounds.h - when a session data document is stored whole, as one
 * value, rather than member by member (doc.c: "Two forms"): the two
 * bounds, size and depth, and the values in use, apart so that doc.h can
 * offer them to tests and the check (doc_check.c) can hold stored texts to
 * the depth without including doc.h.
 *
 * Stored data does not depend on the values in use: both forms read
 * alike, and a document takes the form they call for at its next write.
 */
#ifndef SKY_DOC_BOUNDS_H
#define SKY_DOC_BOUNDS_H

#include <stddef.h>

/*
 * Documents whose compact text is at most this many bytes are stored whole,
 * as one value; larger ones member by member (doc.c: "Two forms"). A 10 KB
 * document is read with one lookup.
 */
#define SKY__DOC_WHOLE_MAX 16384

/*
 * Documents nested deeper than this (objects and arrays, the outermost
 * object being level 1) are stored member by member whatever their size,
 * so that a stored text always parses (jansson refuses text nested deeper
 * than JSON_PARSER_MAX_DEPTH, 2048) and writing or merging it recurses
 * this deep at most. Twice the default depth limit of session data
 * (SKY_DEFAULT_MAX_DEPTH, 64): what a cache takes in under that default
 * can always be stored whole.
 */
#define SKY__DOC_WHOLE_DEPTH_MAX 128

/*
 * Runs of small members in the member form (doc_layout.h): a run holds at
 * most SKY__DOC_RUN_MAX bytes of members' text (one member may go past it
 * alone), each member's value at most SKY__DOC_RUN_MEMBER_MAX bytes. The
 * run bound keeps a run, its key and LMDB's node header within half a
 * 4 KiB page (2040 bytes), so runs sit in leaf pages and never take an
 * overflow page of their own; the member bound, below
 * SKY__DOC_NAME_INLINE_MAX, keeps any name that needs the long form out
 * of a run's values, so that a value reads in the order a node would.
 */
#define SKY__DOC_RUN_MAX 1536
#define SKY__DOC_RUN_MEMBER_MAX 384

/*
 * The bounds in use (SKY__DOC_WHOLE_MAX, SKY__DOC_WHOLE_DEPTH_MAX,
 * SKY__DOC_RUN_MAX, SKY__DOC_RUN_MEMBER_MAX; a run bound of 0 writes no
 * runs). Tests
 * change them to force either form; both read alike, so stored data does
 * not depend on them. The depth may be lowered, never raised: the check
 * holds whole documents to SKY__DOC_WHOLE_DEPTH_MAX.
 */
extern size_t sky__doc_whole_max;
extern size_t sky__doc_whole_depth_max;
extern size_t sky__doc_run_max;
extern size_t sky__doc_run_member_max;

#endif
