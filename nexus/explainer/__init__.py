"""Remotion explainers: the pinned Node toolchain that type-checks, bundles and renders the
compositions the remotion_explainer capability writes.

- ``remotion/``: the toolchain's template (``package.json`` and its ``package-lock.json`` pinning every
  ``@remotion/*`` package to one version, ``tsconfig.json``, the scene kit ``src/kit.tsx`` compositions
  import, the root template, and the Node scripts ``check.mjs`` and ``render.mjs``).
- :mod:`nexus.explainer.toolchain`: installs it into a workspace (``npm install`` from the lockfile), finds
  chromium, and runs ``tsc --noEmit``, the bundler, ``renderStill`` and ``renderMedia`` on compositions.
"""
