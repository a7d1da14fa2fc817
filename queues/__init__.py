"""EntroQ, the transactional task queue, as a Django app.

The client API is :mod:`queues.entroq` and imports without Django configured::

    from queues import entroq
"""
