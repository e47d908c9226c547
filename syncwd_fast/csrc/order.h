/* Stage rows in the order of their integer keys: the C twin of
 * merge.key_order for a table whose key is one integer column. */
#ifndef SYNCWD_ORDER_H
#define SYNCWD_ORDER_H

#include <Python.h>

/* int_order(items, staged) -> list[int] | None: ``staged`` (indices into
 * ``items``, whose element 1 is the record's id) sorted by the ids as
 * integers, ties in their order in ``staged``; None when some id is not
 * -?[0-9]+ within int64 (the Python twin then decides). */
PyObject *sw_int_order(PyObject *module, PyObject *args);

/* ordered_lines(items, order, skip=0) -> bytes: the stage lines (element 3,
 * bytes) of the items at ``order``, joined in that order, each without its
 * first ``skip`` tab-separated fields (merge.copy_payload); ValueError when a
 * line has fewer. */
PyObject *sw_ordered_lines(PyObject *module, PyObject *args);

#endif
