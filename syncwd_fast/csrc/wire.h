/* The drain's per-id work around Redis calls: the C twins of
 * scripts.ids_text and scripts.mget_command. */
#ifndef SYNCWD_WIRE_H
#define SYNCWD_WIRE_H

#ifndef PY_SSIZE_T_CLEAN
#define PY_SSIZE_T_CLEAN
#endif
#include <Python.h>

/* ids_text(raw) -> list[str]: each id's bytes as UTF-8, bytes that are not
 * UTF-8 kept as surrogates ("surrogateescape"). */
PyObject *sw_ids_text(PyObject *module, PyObject *args);

/* mget_command(prefix, raw) -> bytes: "MGET prefix+id ..." in the Redis
 * protocol, byte for byte what hiredis.pack_command gives. */
PyObject *sw_mget_command(PyObject *module, PyObject *args);

#endif
