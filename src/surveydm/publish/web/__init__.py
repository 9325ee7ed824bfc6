"""The operations portal: a FastAPI application over the registry and the archive.

>>> from surveydm.publish.web import create_app
>>> app = create_app(settings)          # then: uvicorn.run(app) or ``surveydm serve``
"""

from surveydm.publish.web.app import create_app

__all__ = ["create_app"]
