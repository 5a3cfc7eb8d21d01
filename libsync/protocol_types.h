/*
 * protocol_types.h - the names the library gives the REST calls and the
 * event types of docs/PROTOCOL.md. The protocol table (protocol.h) maps
 * each to its wire form; the REST layer (api.h) and the event code
 * (events.h) use them. Types only, so that the table sits below both and
 * neither depends on the other through it.
 */
#ifndef SKY_PROTOCOL_TYPES_H
#define SKY_PROTOCOL_TYPES_H

typedef enum {
	SKY_API_LOGIN,		 /* POST  body {username, password, realm} */
	SKY_API_REFRESH,	 /* POST  body {refreshToken} */
	SKY_API_APPS,		 /* GET   -> [application] */
	SKY_API_APP,		 /* GET   -> application */
	SKY_API_ROLES,		 /* GET   -> [role] */
	SKY_API_SESSIONS,	 /* GET   -> [session] (open ones) */
	SKY_API_SESSION_CREATE,	 /* POST  -> session */
	SKY_API_SESSION,	 /* GET   -> session */
	SKY_API_SESSION_PATCH,	 /* PATCH -> session */
	SKY_API_DATA,		 /* GET   -> data object */
	SKY_API_DATA_PATCH,	 /* PATCH -> data object */
	SKY_API_PARTICIPANT_ADD, /* POST  -> session */
	SKY_API_EVENT_SEND,	 /* POST  custom event data */
	SKY_API_COUNT
} sky_api_call;

typedef enum {
	SKY_EV_SESSION_CREATED,
	SKY_EV_SESSION_UPDATED,
	SKY_EV_PROPERTIES_UPDATED,
	SKY_EV_DATA_UPDATED,
	SKY_EV_EVENT_CREATED,
	SKY_EV_SESSION_CLOSED,
} sky_event_type;

/* How many event types there are (the size of the tables indexed by one). */
#define SKY_EV_COUNT 6

#endif
