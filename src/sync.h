/*
 * sync.h — declarations shared by the extension's modules.
 */
#ifndef SYNC_H
#define SYNC_H

/* SYNC_VERSION comes from sync.control's default_version (-D in the Makefile) */
#ifndef SYNC_VERSION
#error "SYNC_VERSION is not defined: build with the Makefile"
#endif

extern void _PG_init(void);

#endif							/* SYNC_H */
