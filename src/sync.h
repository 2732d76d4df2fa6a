/*
 * sync.h — declarations shared by the extension's modules.
 */
#ifndef SYNC_H
#define SYNC_H

#define SYNC_VERSION "0.1"

extern void _PG_init(void);

#endif							/* SYNC_H */
