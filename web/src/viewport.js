// What both viewers do before drawing: the drawing buffer and the camera follow the canvas's CSS size.
export function fitToCanvas(renderer, camera, canvas) {
  const { clientWidth: width, clientHeight: height } = canvas;
  if (width && height) {
    renderer.setSize(width, height, false);
    camera.aspect = width / height;
    camera.updateProjectionMatrix();
  }
}
