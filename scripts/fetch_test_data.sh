#!/usr/bin/env bash
# Fetch the OPTIONAL non-commercial test scans (KITTI, nuScenes) into ../shared/data (or $1).
# They are CC BY-NC-SA (research use only), so they are not in this repository; the tests that
# need them skip with a reason until they are here. The Apache-2.0 Hesai scan is already in
# test/data/ (see test/data/README.md). Each file is checked against its sha256.
#   usage: scripts/fetch_test_data.sh [DEST]    (then: VLA_EDGE_SHARED_DATA=DEST make test)
set -euo pipefail
cd "$(dirname "$0")/.."
DEST="${1:-${VLA_EDGE_SHARED_DATA:-../shared/data}}"
MMDET="https://raw.githubusercontent.com/open-mmlab/mmdetection3d/main/demo/data"
NUSC="n015-2018-07-24-11-22-45+0800"
mkdir -p "$DEST/lidar"
# dest | sha256 | candidate URLs (the demo file was renamed upstream once)
fetch() {
  local out="$DEST/$1" sum="$2"; shift 2
  if [ -f "$out" ] && echo "$sum  $out" | sha256sum -c --quiet - 2>/dev/null; then echo "ok    $out"; return 0; fi
  for url in "$@"; do
    if curl -fsSL --retry 2 -o "$out.part" "$url" && echo "$sum  $out.part" | sha256sum -c --quiet - 2>/dev/null; then
      mv "$out.part" "$out"; echo "got   $out  <- $url"; return 0
    fi
  done
  rm -f "$out.part"; echo "FAILED $out (sha256 $sum) from: $*" >&2; return 1
}
echo "KITTI (CC BY-NC-SA 3.0) and nuScenes (CC BY-NC-SA 4.0) demo files from open-mmlab/mmdetection3d; research use only."
fetch lidar/kitti_000008.bin 3b9de6cc966534900f6a1bdc93b21772e47a334eb2ef18082021956520d902d1 \
  "$MMDET/kitti/000008.bin" "$MMDET/kitti/kitti_000008.bin"
fetch lidar/nuscenes_lidar_top_1532402927647951.bin 5f8f9b1b199ceff7d41cd319021a7a7b02dcd44d41f622a9e65a6a4a6be3cbdb \
  "$MMDET/nuscenes/${NUSC}__LIDAR_TOP__1532402927647951.pcd.bin"
fetch camera_nuscenes_cam_front.jpg b7b7d466207462cf46742297a36afdd65315c05ae33126d5d36412aae70a0b62 \
  "$MMDET/nuscenes/${NUSC}__CAM_FRONT__1532402927612460.jpg"
cp -n test/data/lidar/hesai_qt64_1673401196087570870.pcd "$DEST/lidar/" 2>/dev/null || true
echo "done: run the tests with VLA_EDGE_SHARED_DATA=$(cd "$DEST" && pwd)"
