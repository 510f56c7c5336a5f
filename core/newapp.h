/* newapp.h — `moonwire new DIR`: writes a minimal app to start from. */
#ifndef MW_NEWAPP_H
#define MW_NEWAPP_H

/* Creates dir (which must not exist, or be empty) with the skeleton app:
 * scripts/app.lua with one route and one socket handler, views/, public/,
 * spec/ with a passing spec, a Makefile and README of the two commands.
 * With a template ("chat" or "pets", else NULL), the app is that part of
 * the example app instead, with its specs, migrations and seeds (the
 * skeleton's Makefile, README and .busted stay). Prints what it did;
 * returns the process exit status. */
int mw_new_app(const char *dir, const char *template);

#endif
