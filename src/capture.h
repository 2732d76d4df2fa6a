/*
 * capture.h — the capture trigger's state shared with the inbound apply.
 */
#ifndef SYNC_CAPTURE_H
#define SYNC_CAPTURE_H

/*
 * Set by the inbound apply (and the write-back of push results) while it
 * writes rows of this mirror, so the capture trigger does not queue them:
 * no echo.  Reset on error by the setter's PG_FINALLY.
 */
extern int	sync_applying_mirror;

#endif							/* SYNC_CAPTURE_H */
