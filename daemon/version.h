/* The version of cardlicd and cardlicctl: one place, so they cannot drift. */
#ifndef CARDLIC_VERSION_H
#define CARDLIC_VERSION_H

#define CARDLICD_VERSION	"0.1"

#endif
