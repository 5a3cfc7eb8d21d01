/*
 * deliver.h - sending the outbox's writes to the server through the sync
 * engine (deliver.c): attached as one of the engine's online modules.
 */
#ifndef SKY_DELIVER_H
#define SKY_DELIVER_H

struct sky_engine;

/* Deliver this cache's outbox through engine `e`. 0 or a negative code. */
int sky__deliver_attach(struct sky_engine *e);

#endif
