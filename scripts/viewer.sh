#!/usr/bin/env bash
# Installs the OHIF viewer that `cloudpacs serve` offers at /viewer/.
#
# The @ohif/app package on the npm registry carries OHIF's prebuilt static
# build (package/dist). This script fetches only that tarball (`npm pack`,
# no dependency tree), checks it against the integrity hash pinned below,
# unpacks the build into web/viewer/ and configures it:
#   - the build expects to live at the site root: its index.html and its
#     webpack public path are moved under /viewer/;
#   - app-config.js points its one data source at cloudpacs's own DICOMweb
#     service, by relative URLs (/dicom-web), so it works behind any host.
#
#   scripts/viewer.sh            install, unless the same version is there
#   scripts/viewer.sh --force    install again
#
# web/viewer/ and the tarball cache .cache/ohif/ are ignored by git.
# `cloudpacs serve` finds web/viewer/ by itself (see [http] viewer_dir).
set -euo pipefail
cd "$(dirname "$0")/.."

OHIF_VERSION=3.13.2
# `npm view @ohif/app@$OHIF_VERSION dist.integrity`, in two pieces for width.
OHIF_INTEGRITY='sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6'
OHIF_INTEGRITY+='Zk2F87BKxFfpq+jd5xXZB9E8EA=='
BASE=/viewer/

cache=.cache/ohif
tarball=$cache/ohif-app-$OHIF_VERSION.tgz
dest=web/viewer
stamp="$OHIF_VERSION $OHIF_INTEGRITY base=$BASE config=3"

if [[ "${1:-}" != "--force" && -f "$dest/.cloudpacs-viewer" ]] &&
    [[ "$(cat "$dest/.cloudpacs-viewer")" == "$stamp" ]]; then
    exit 0
fi

# sha512 of a file in npm's integrity notation (Subresource Integrity),
# with the Node.js that npm runs on.
integrity_of() {
    node -e 'const fs = require("fs"), crypto = require("crypto");
        const h = crypto.createHash("sha512").update(fs.readFileSync(process.argv[1]));
        process.stdout.write("sha512-" + h.digest("base64"));' "$1"
}

mkdir -p "$cache"
if [[ ! -f "$tarball" || "$(integrity_of "$tarball")" != "$OHIF_INTEGRITY" ]]; then
    rm -f "$tarball"
    echo "viewer: fetching @ohif/app@$OHIF_VERSION (about 50 MB)" >&2
    (cd "$cache" && npm pack --silent "@ohif/app@$OHIF_VERSION" >/dev/null)
fi
got=$(integrity_of "$tarball")
if [[ "$got" != "$OHIF_INTEGRITY" ]]; then
    echo "viewer: $tarball has integrity $got, want $OHIF_INTEGRITY" >&2
    rm -f "$tarball"
    exit 1
fi

work=$(mktemp -d "$cache/unpack.XXXXXX")
trap 'rm -rf "$work"' EXIT
tar -xzf "$tarball" -C "$work" package/dist
dist=$work/package/dist
if [[ ! -f "$dist/index.html" ]]; then
    echo "viewer: no package/dist/index.html in $tarball" >&2
    exit 1
fi

# Replaces $2 by $3 in file $1, failing when $2 is not there: a new OHIF
# version that no longer matches must stop the install, not half-work.
patch_text() {
    local file=$1 from=$2 to=$3
    if ! grep -qF -- "$from" "$file"; then
        echo "viewer: '$from' not found in $file" >&2
        exit 1
    fi
    FROM=$from TO=$to perl -0pi -e 's/\Q$ENV{FROM}\E/$ENV{TO}/g' "$file"
}

# The build's absolute paths ("/app-config.js", "/assets/...") and its
# PUBLIC_URL (the base of OHIF's router and of its lazily loaded files).
patch_text "$dist/index.html" 'window.PUBLIC_URL="/"' "window.PUBLIC_URL=\"$BASE\""
patch_text "$dist/index.html" 'src="/' "src=\"$BASE"
patch_text "$dist/index.html" 'href="/' "href=\"$BASE"
# webpack's public path, from which every chunk, worker and codec
# (.wasm) is loaded: the app's and each web worker's runtime.
patched=0
while IFS= read -r file; do
    patch_text "$file" '__webpack_require__.p = "/";' "__webpack_require__.p = \"$BASE\";"
    patched=$((patched + 1))
done < <(grep -lF '__webpack_require__.p = "/";' "$dist"/*.js)
if ((patched == 0)) || ! grep -qF "__webpack_require__.p = \"$BASE\";" "$dist"/app.bundle.*.js
then
    echo "viewer: webpack's public path not found in the app bundle" >&2
    exit 1
fi
# The fonts the stylesheet names from the root.
patch_text "$dist/app.bundle.css" 'url(/' "url($BASE"

cat >"$dist/app-config.js" <<'EOF'
/*
 * OHIF configuration written by cloudpacs's scripts/viewer.sh: one data
 * source, cloudpacs's own DICOMweb service (PS3.18) on the same origin.
 */

/*
 * /viewer/?StudyInstanceUIDs=... opens the study: OHIF's root is its study
 * list, its viewer the "viewer" route, so move there before the app starts.
 */
(function () {
  var loc = window.location;
  if ((loc.pathname === '/viewer' || loc.pathname === '/viewer/') &&
      /[?&]StudyInstanceUIDs=/.test(loc.search))
    window.history.replaceState(null, '', '/viewer/viewer' + loc.search + loc.hash);
})();

window.config = {
  name: 'cloudpacs',
  routerBasename: '/viewer',
  extensions: [],
  modes: [],
  customizationService: {},
  showStudyList: true,
  maxNumberOfWebWorkers: 3,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: true,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  maxNumRequests: { interaction: 100, thumbnail: 5, prefetch: 25 },
  showErrorDetails: 'always',
  investigationalUseDialog: { option: 'never' },
  defaultDataSourceName: 'cloudpacs',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'cloudpacs',
      configuration: {
        friendlyName: 'cloudpacs',
        name: 'cloudpacs',
        qidoRoot: '/dicom-web',
        wadoRoot: '/dicom-web',
        wadoUriRoot: '/dicom-web',
        qidoSupportsIncludeField: true,
        supportsReject: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: true,
        supportsWildcard: true,
        staticWado: false,
        singlepart: 'bulkdata,video',
        omitQuotationForMultipartRequest: true,
        bulkDataURI: { enabled: true, relativeResolution: 'studies' },
      },
    },
  ],
};
EOF

rm -rf "$dest.new"
mkdir -p "$(dirname "$dest")"
mv "$dist" "$dest.new"
echo "$stamp" >"$dest.new/.cloudpacs-viewer"
rm -rf "$dest"
mv "$dest.new" "$dest"
echo "viewer: OHIF $OHIF_VERSION installed in $dest" >&2
