/*
 * index.h - the query indexes, kept in the same write transaction as the
 * session record they describe (record.c calls these on every put and
 * delete), so an index can never disagree with its record.
 *
 * Layout of the `index` database (MDB_DUPSORT). Every key starts with the
 * application id and a NUL, then a kind byte:
 *
 *   app \0 'A'                    every session of the application
 *   app \0 'V' field \0 value     sessions whose field has that value
 *   app \0 'X' field              sessions that have the field at all
 *                                 (index version 2 only, see below)
 *
 * where `field` is one code byte, followed by the name for properties:
 *
 *   'p' name   a property         's'  status      'n'  name
 *   'u'        a participant of type user (the default type)
 *   'g'        a participant of type group
 *   'c'        createdBy                'm'  modifiedBy
 *   'd'        isDraft: value "true" or "false" (no 'X' key)
 *   'v'        version: value 8 bytes, an integer in sky__put_time form
 *   'M'        modifiedAt: value 8 bytes, microseconds in sky__put_time
 *              form (no 'X' key)
 *
 * The 8-byte values sort like the numbers, so a range of versions or of
 * modifiedAt times is a range of keys.
 * createdAt needs no key of its own: every list is already in createdAt
 * order, so a createdAt range is a range of positions.
 *
 * Index versions. The meta value "index_version" (SKY_META_IX_VERSION)
 * says which entries the index holds: absent means 1 (no 'c', 'm', 'd',
 * 'v', 'M' keys) unless the index is empty (a new cache, whose first
 * update records the version); 2 adds them; 3 drops the 'X' keys, which
 * were 13 of a typical session's 30 entries: "the field is there" is the
 * union of the field's 'V' keys, one prefix "app \0 'V' field \0" (for
 * strings, the only values 'X' keys were written for), so a query for it
 * walks that prefix as a prefix predicate does. Which version a cache
 * writes goes with its schema (store.h): 3 from schema 4 on, 2 before,
 * since a process of an older library may have the cache open and would
 * find no 'X' keys for sessions written without them. A read-write open
 * of an older index than its cache's (1 under 2) rebuilds it from the
 * records in one transaction (sky__index_upgrade); a read-only open
 * leaves it as it is, and queries then check the fields the old index
 * lacks on the record.
 *
 * The data items (dups) of every key are  created_us(8, sky__put_time)
 * sessionId : LMDB keeps them sorted, so each key's list of sessions is
 * already in result order (createdAt, then sessionId) and mdb_cursor_count
 * gives exact counts for the planner.
 *
 * Long keys. LMDB keys hold at most SKY_KEY_MAX (511) bytes. A logical key
 * longer than that is stored as its first SKY_IX_KEEP bytes, a 0xFF byte
 * and the 64-bit hash of the whole logical key. Property names and values
 * are UTF-8, which never contains 0xFF, so a hashed key can never equal a
 * plain one; and since the kept bytes are a prefix of the logical key, a
 * prefix scan still finds hashed keys. Entries found through a hashed key
 * are candidates only: the query checks them against the record, so
 * results stay exact even if two long values collide.
 */
#ifndef SKY_INDEX_H
#define SKY_INDEX_H

#include <jansson.h>
#include <lmdb.h>
#include <stdint.h>

#include "cache_types.h"

/* Kind bytes. */
#define SKY_IX_ALL 'A'
#define SKY_IX_VALUE 'V'
#define SKY_IX_EXISTS 'X'

/* Field codes. */
#define SKY_IXF_PROP 'p'
#define SKY_IXF_STATUS 's'
#define SKY_IXF_NAME 'n'
#define SKY_IXF_USER 'u'
#define SKY_IXF_GROUP 'g'
#define SKY_IXF_CREATED_BY 'c'
#define SKY_IXF_MODIFIED_BY 'm'
#define SKY_IXF_DRAFT 'd'
#define SKY_IXF_VERSION 'v'
#define SKY_IXF_MODIFIED_AT 'M'

/* The newest layout this library writes, and the meta value that records
 * the one a cache has. */
#define SKY_IX_VERSION 3u
#define SKY_META_IX_VERSION "index_version"

/* The layout a cache of schema `schema` writes: 3 from schema 4 on. */
static inline unsigned sky__index_version_for(unsigned schema)
{
	return schema >= 4 ? 3u : 2u;
}

/* Bytes of a long logical key kept before the 0xFF marker and hash. */
#define SKY_IX_KEEP (SKY_KEY_MAX - 9)
/* Largest data item: created_us + the longest session id. */
#define SKY_IX_POS_MAX (8 + SKY_MAX_ID_BYTES)

/*
 * An index key under construction: bytes are appended and hashed as they
 * come, so a 64 KB property value never needs a 64 KB buffer.
 */
typedef struct {
	unsigned char data[SKY_KEY_MAX];
	size_t len;    /* stored bytes (after sky__ixkey_end) */
	size_t full;   /* length of the whole logical key */
	uint64_t hash; /* FNV-1a of the whole logical key */
	int hashed;    /* 1 when stored as prefix + 0xFF + hash */
} sky_ixkey;

/* Start a key "app \0 kind". */
void sky__ixkey_begin(sky_ixkey *k, const char *app, char kind);
/* Append logical bytes. */
void sky__ixkey_add(sky_ixkey *k, const void *data, size_t len);
/* Append the field: code, then the property name for SKY_IXF_PROP. */
void sky__ixkey_field(sky_ixkey *k, char code, const char *prop);
/* Finish: the stored form, hashed when the logical key is too long. */
void sky__ixkey_end(sky_ixkey *k);

/* Whole keys, finished. `value` is `vlen` bytes. */
void sky__ixkey_value(sky_ixkey *k, const char *app, char code,
		      const char *prop, const char *value, size_t vlen);
void sky__ixkey_exists(sky_ixkey *k, const char *app, char code,
		       const char *prop);
void sky__ixkey_all(sky_ixkey *k, const char *app);
/* A value key whose value is a number in sky__put_time form (8 bytes). */
void sky__ixkey_number(sky_ixkey *k, const char *app, char code, int64_t value);

/* True when a stored key is a hashed (long) one. */
static inline int sky__ixkey_is_hashed(const void *key, size_t len)
{
	return len == SKY_KEY_MAX &&
	       ((const unsigned char *)key)[SKY_IX_KEEP] == 0xFF;
}

/*
 * A position in result order: created_us (sky__put_time) + sessionId.
 * Positions compare like LMDB compares the data items (bytes, then length).
 */
typedef struct {
	unsigned char data[SKY_IX_POS_MAX + 1];
	size_t len;
} sky_ixpos;

void sky__ixpos_make(sky_ixpos *p, int64_t created_us, const char *sid);
int sky__ixpos_cmp(const sky_ixpos *a, const sky_ixpos *b);
/* Compare a position with a stored position value (an index entry's data). */
int sky__ixpos_cmp_val(const sky_ixpos *a, const MDB_val *v);
void sky__ixpos_set(sky_ixpos *p, const MDB_val *v);
/* The session id of a position, copied into buf[SKY_MAX_ID_BYTES + 1]. */
void sky__ixpos_sid(const sky_ixpos *p, char *buf);
int64_t sky__ixpos_created(const sky_ixpos *p);

/*
 * Replace the index entries of one session: remove those of `old` (NULL
 * when the session is new) and add those of `now` (NULL when it is being
 * deleted). Both are session objects with applicationId and sessionId.
 * Only entries that differ are written, so a property update touches the
 * two entries of that property.
 */
int sky__index_update(MDB_txn *txn, sky_cache *c, const json_t *old,
		      int64_t old_created_us, const json_t *now,
		      int64_t now_created_us);

/* The index version of the cache in txn (1 when none is recorded). */
unsigned sky__index_version(MDB_txn *txn, sky_cache *c);

/*
 * Bring an older index up to the version its cache writes
 * (sky__index_version_for): rebuild every entry from the records and
 * record the version, in one write transaction. Nothing to do when it is
 * current or the cache is read-only. Called at open.
 */
int sky__index_upgrade(sky_cache *c);

/*
 * Does the index list session `sid` (created at `created_us`) under field
 * `code` (not a property) with value `value` (`vlen` bytes)? One lookup,
 * no record parsed: the index always matches the record. 1, 0 or an
 * error.
 */
int sky__index_has_value(MDB_txn *txn, sky_cache *c, const char *app, char code,
			 const char *value, size_t vlen, const char *sid,
			 int64_t created_us);
/*
 * Verify the indexes against the records in both directions: every index
 * entry names a record that has that value, and every record has all its
 * entries. Appends one line per problem to `problems` (at most a thousand,
 * then a count); returns 0 when clean, SKY_EINVAL when problems were
 * found, another negative code when the check could not run. The
 * entries expected are those of the cache's index version.
 */
int sky__index_check(MDB_txn *txn, sky_cache *c, sky_buf *problems);

/*
 * The index entries a session should have in an index of `version` (keys
 * only: every entry's data item is the session's position). Used by the
 * check and by tests. Calls fn(key, len, arg) once per distinct key;
 * stops on non-zero.
 */
int sky__index_entries(const json_t *session, unsigned version,
		       int (*fn)(const unsigned char *, size_t, void *),
		       void *arg);

#endif
