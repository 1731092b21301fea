"""The gateway: host + path routing from `DNS` objects to Services, served by nginx in `kube-system/gateway`.

`config` renders nginx.conf from DNS objects and Services (a pure function); `controller` keeps
that rendering current from informers, serves it to the gateway pods' sidecars by long poll and
writes each DNS object's `status.paths`; `manifests` holds the gateway Deployment and Service.
"""
