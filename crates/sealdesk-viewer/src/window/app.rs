//! The window thread: winit's event loop, the window and its softbuffer surface.

use std::num::NonZeroU32;
use std::rc::Rc;
use std::sync::mpsc::SyncSender;
use std::time::Instant;

use fast_image_resize::Resizer;
use sealdesk_proto::control::ControlMessage;
use winit::application::ApplicationHandler;
use winit::dpi::PhysicalSize;
use winit::error::EventLoopError;
use winit::event::{DeviceEvent, DeviceId, ElementState, KeyEvent, WindowEvent};
use winit::event_loop::{ActiveEventLoop, ControlFlow, EventLoop, EventLoopProxy};
use winit::keyboard::{Key, ModifiersState, NamedKey};
use winit::platform::modifier_supplement::KeyEventExtModifierSupplement;
use winit::platform::x11::EventLoopBuilderExtX11;
use winit::window::{CursorIcon, CustomCursor, Window, WindowId};

use super::cursor;
use super::keys::{self, Keyboard};
use super::layout::Fit;
use super::overlay;
use super::pointer::{self, Pointer, WheelEcho};
use super::render::{self, Renderer};
use super::sprite;
use super::{lock, CursorImage, FrameSlot, FromWindow, Picture, ToWindow, Wake, WindowError};

/// The window's size when the monitor leaves room for it.
const DEFAULT_SIZE: (u32, u32) = (1280, 720);
/// Share of the monitor the window may cover at first (room for panels and decorations).
const MONITOR_SHARE: f64 = 0.9;

type Events = Box<dyn FnMut(FromWindow) + Send>;
type Ready = SyncSender<Result<EventLoopProxy<Wake>, WindowError>>;

/// Marks the frame slot closed when the window thread ends, however it ends.
struct MarkClosed(FrameSlot);

impl Drop for MarkClosed {
    fn drop(&mut self) {
        let mut slot = lock(&self.0);
        slot.closed = true;
        slot.picture = None;
    }
}

/// The window thread's body: reports the proxy (or why there is none) through `ready` once
/// the window exists, then runs until the window closes.
pub(super) fn run(
    config: super::WindowConfig,
    events: Events,
    slot: FrameSlot,
    ready: Ready,
) -> Result<(), WindowError> {
    let _closed = MarkClosed(slot.clone());
    let event_loop = match EventLoop::<Wake>::with_user_event()
        .with_x11()
        .with_any_thread(true)
        .build()
    {
        Ok(event_loop) => event_loop,
        Err(e) => {
            let e = match e {
                EventLoopError::RecreationAttempt => WindowError::AlreadyOpened,
                other => WindowError::Platform(other.to_string()),
            };
            let _ = ready.send(Err(e));
            return Ok(());
        }
    };
    event_loop.set_control_flow(ControlFlow::Wait);
    let mut app = App {
        title: config.title,
        events,
        slot,
        ready: Some((ready, event_loop.create_proxy())),
        view: None,
        picture: None,
        stats: String::new(),
        renderer: Renderer::default(),
        pointer: Pointer::default(),
        wheel_echo: WheelEcho::default(),
        keyboard: Keyboard::default(),
        modifiers: ModifiersState::empty(),
        remote_at: None,
        cursor: CursorState::default(),
        warned: Warned::default(),
    };
    let result = event_loop.run_app(&mut app);
    let ready = app.ready.take();
    // Close the X window before `join` returns.
    drop(app);
    match (result, ready) {
        // The loop ended before the window existed: `open` is still waiting.
        (Err(e), Some((ready, _))) => {
            let _ = ready.send(Err(WindowError::Platform(e.to_string())));
            Ok(())
        }
        (Ok(()), Some((ready, _))) => {
            let _ = ready.send(Err(WindowError::Platform(
                "the event loop ended before the window was created".into(),
            )));
            Ok(())
        }
        (Err(e), None) => Err(WindowError::Platform(e.to_string())),
        (Ok(()), None) => Ok(()),
    }
}

/// The window and what draws into it.
struct View {
    window: Rc<Window>,
    surface: softbuffer::Surface<Rc<Window>, Rc<Window>>,
    /// The surface's size, once set.
    size: Option<(NonZeroU32, NonZeroU32)>,
}

/// The remote cursor and what was made of it.
#[derive(Default)]
struct CursorState {
    remote: Option<CursorImage>,
    /// The cursor in use and the scale it was made at.
    applied: Option<(CustomCursor, f64)>,
    resizer: Resizer,
}

/// Failures reported once each (they tend to repeat every frame).
#[derive(Debug, Default)]
struct Warned {
    draw: bool,
    present: bool,
    picture: bool,
    cursor: bool,
}

struct App {
    title: String,
    events: Events,
    slot: FrameSlot,
    /// Until the window exists: where to report it, and the proxy to report.
    ready: Option<(Ready, EventLoopProxy<Wake>)>,
    view: Option<View>,
    /// The newest well-formed picture (kept to redraw after a resize).
    picture: Option<Picture>,
    stats: String,
    renderer: Renderer,
    pointer: Pointer,
    wheel_echo: WheelEcho,
    keyboard: Keyboard,
    /// The modifiers held (for the viewer's own shortcut).
    modifiers: ModifiersState,
    /// Where the host's pointer is (picture pixels), as the host last said.
    remote_at: Option<(i32, i32)>,
    cursor: CursorState,
    warned: Warned,
}

impl App {
    fn emit(&mut self, message: ControlMessage) {
        (self.events)(FromWindow::Control(message));
    }

    fn emit_opt(&mut self, message: Option<ControlMessage>) {
        if let Some(m) = message {
            self.emit(m);
        }
    }

    /// Nothing may stay pressed on the host: focus lost, window covered or closed.
    fn release_all(&mut self) {
        self.keyboard.clear();
        self.pointer.reset_wheel();
        self.emit(ControlMessage::ReleaseAll);
    }

    /// The window's inner size in physical pixels.
    fn window_size(&self) -> Option<(u32, u32)> {
        let size = self.view.as_ref()?.window.inner_size();
        Some((size.width, size.height))
    }

    /// Where the current picture sits in the current window.
    fn fit(&self) -> Option<Fit> {
        let picture = self.picture.as_ref()?;
        let (w, h) = self.window_size()?;
        Fit::new(picture.width, picture.height, w, h)
    }

    fn request_redraw(&self) {
        if let Some(view) = &self.view {
            view.window.request_redraw();
        }
    }

    fn create_view(&mut self, event_loop: &ActiveEventLoop) -> Result<View, WindowError> {
        let monitor = event_loop
            .primary_monitor()
            .or_else(|| event_loop.available_monitors().next());
        let (width, height) = initial_size(monitor.map(|m| {
            let s = m.size();
            (s.width, s.height)
        }));
        let attributes = Window::default_attributes()
            .with_title(self.title.clone())
            .with_inner_size(PhysicalSize::new(width, height));
        let window = Rc::new(
            event_loop
                .create_window(attributes)
                .map_err(|e| WindowError::Platform(e.to_string()))?,
        );
        let context = softbuffer::Context::new(window.clone())
            .map_err(|e| WindowError::Platform(e.to_string()))?;
        let surface = softbuffer::Surface::new(&context, window.clone())
            .map_err(|e| WindowError::Platform(e.to_string()))?;
        Ok(View {
            window,
            surface,
            size: None,
        })
    }

    fn draw(&mut self) {
        let Some((w, h)) = self.window_size() else {
            return;
        };
        let (Some(nw), Some(nh)) = (NonZeroU32::new(w), NonZeroU32::new(h)) else {
            // A zero-sized window shows nothing.
            return;
        };
        let show_sprite = self.sprite_shown();
        let Some(view) = self.view.as_mut() else {
            return;
        };
        if view.size != Some((nw, nh)) {
            if let Err(e) = view.surface.resize(nw, nh) {
                warn_once(&mut self.warned.draw, "resizing the surface", &e);
                return;
            }
            view.size = Some((nw, nh));
        }
        let mut buffer = match view.surface.buffer_mut() {
            Ok(b) => b,
            Err(e) => {
                warn_once(&mut self.warned.draw, "getting the surface buffer", &e);
                return;
            }
        };
        if let Err(e) = self.renderer.draw(&mut buffer, w, h, self.picture.as_ref()) {
            warn_once(&mut self.warned.picture, "drawing the picture", &e);
        }
        if show_sprite {
            if let (Some(at), Some(image), Some(fit)) = (
                self.remote_at,
                self.cursor.remote.as_ref(),
                self.picture
                    .as_ref()
                    .and_then(|p| Fit::new(p.width, p.height, w, h)),
            ) {
                sprite::draw(&mut buffer, w, &fit, image, at);
            }
        }
        let scale = view.window.scale_factor().round().clamp(1.0, 4.0);
        // In 1..=4 after the clamp.
        overlay::draw(&mut buffer, w, h, &self.stats, scale as u32);
        if let Err(e) = buffer.present() {
            warn_once(&mut self.warned.present, "presenting the frame", &e);
        }
    }

    /// Whether the host's pointer is drawn: known, and away from the local one.
    fn sprite_shown(&self) -> bool {
        self.remote_at
            .is_some_and(|at| sprite::visible(at, self.pointer.local_pixel()))
    }

    fn new_picture(&mut self, event_loop: &ActiveEventLoop, picture: Picture) {
        if !render::well_formed(&picture) {
            let bytes = picture.bgra.len();
            if !std::mem::replace(&mut self.warned.picture, true) {
                tracing::warn!(
                    width = picture.width,
                    height = picture.height,
                    bytes,
                    "dropping a picture whose size does not match its pixels"
                );
            }
            return;
        }
        let resized = self
            .picture
            .as_ref()
            .is_none_or(|p| (p.width, p.height) != (picture.width, picture.height));
        self.picture = Some(picture);
        if resized {
            self.follow_scale(event_loop, false);
        }
        self.request_redraw();
    }

    /// Shows the remote cursor at the picture's current scale; `force` remakes it even if the
    /// scale barely changed (a new shape).
    fn follow_scale(&mut self, event_loop: &ActiveEventLoop, force: bool) {
        let scale = self.fit().map_or(1.0, |f| f.scale());
        let Some(view) = &self.view else {
            return;
        };
        let Some(image) = &self.cursor.remote else {
            if force {
                self.cursor.applied = None;
                view.window.set_cursor(CursorIcon::Default);
            }
            return;
        };
        let wanted = cursor::cursor_scale(image, scale);
        if let Some((_, applied)) = &self.cursor.applied {
            if !force && !cursor::needs_update(*applied, wanted) {
                return;
            }
        }
        match cursor::prepare(&mut self.cursor.resizer, image, wanted)
            .map(|p| CustomCursor::from_rgba(p.rgba, p.width, p.height, p.hot_x, p.hot_y))
        {
            Some(Ok(source)) => {
                let made = event_loop.create_custom_cursor(source);
                view.window.set_cursor(made.clone());
                self.cursor.applied = Some((made, wanted));
            }
            Some(Err(e)) => {
                warn_once(&mut self.warned.cursor, "making the cursor", &e);
                self.cursor.applied = None;
                view.window.set_cursor(CursorIcon::Default);
            }
            None => {
                if !std::mem::replace(&mut self.warned.cursor, true) {
                    tracing::warn!("remote cursor image refused (malformed or too large)");
                }
                // Not retried at every resize.
                self.cursor.remote = None;
                self.cursor.applied = None;
                view.window.set_cursor(CursorIcon::Default);
            }
        }
    }

    fn keyboard_input(&mut self, event: &KeyEvent) {
        // The viewer's one shortcut, Ctrl+Alt+Shift+←/→: show the previous/next monitor. The
        // arrow is not sent to the host (the modifiers were, as keys of their own).
        if event.state == ElementState::Pressed
            && self.modifiers.control_key()
            && self.modifiers.alt_key()
            && self.modifiers.shift_key()
        {
            let forward = match event.key_without_modifiers() {
                Key::Named(NamedKey::ArrowRight) => Some(true),
                Key::Named(NamedKey::ArrowLeft) => Some(false),
                _ => None,
            };
            if let Some(forward) = forward {
                (self.events)(FromWindow::SwitchMonitor { forward });
                return;
            }
        }
        match event.state {
            ElementState::Pressed => {
                let sym = keys::keysym(&event.key_without_modifiers(), event.location);
                let message = self.keyboard.press(event.physical_key, sym);
                self.emit_opt(message);
            }
            ElementState::Released => {
                let message = self.keyboard.release(event.physical_key);
                self.emit_opt(message);
            }
        }
    }
}

/// The first window size: [`DEFAULT_SIZE`], shrunk (aspect kept) to [`MONITOR_SHARE`] of the
/// monitor.
fn initial_size(monitor: Option<(u32, u32)>) -> (u32, u32) {
    let (w, h) = DEFAULT_SIZE;
    let Some((mw, mh)) = monitor.filter(|&(mw, mh)| mw > 0 && mh > 0) else {
        return (w, h);
    };
    let limit_w = f64::from(mw) * MONITOR_SHARE;
    let limit_h = f64::from(mh) * MONITOR_SHARE;
    let s = (limit_w / f64::from(w))
        .min(limit_h / f64::from(h))
        .min(1.0);
    // At most DEFAULT_SIZE; `as` saturates.
    let scaled = |v: u32| ((f64::from(v) * s).floor() as u32).max(64);
    (scaled(w), scaled(h))
}

fn warn_once(flag: &mut bool, what: &str, error: &dyn std::fmt::Display) {
    if !std::mem::replace(flag, true) {
        tracing::warn!(%error, "viewer window: {what} failed");
    }
}

impl ApplicationHandler<Wake> for App {
    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.view.is_some() {
            return;
        }
        match self.create_view(event_loop) {
            Ok(view) => {
                view.window.request_redraw();
                self.view = Some(view);
                if let Some((ready, proxy)) = self.ready.take() {
                    if ready.send(Ok(proxy)).is_err() {
                        // `open` is gone (it cannot be, it waits): nobody to serve.
                        event_loop.exit();
                    }
                }
            }
            Err(e) => {
                if let Some((ready, _)) = self.ready.take() {
                    let _ = ready.send(Err(e));
                }
                event_loop.exit();
            }
        }
    }

    fn user_event(&mut self, event_loop: &ActiveEventLoop, event: Wake) {
        match event {
            Wake::Frame => {
                let picture = lock(&self.slot).picture.take();
                if let Some(p) = picture {
                    self.new_picture(event_loop, p);
                }
            }
            Wake::Message(ToWindow::Frame(p)) => self.new_picture(event_loop, p),
            Wake::Message(ToWindow::Cursor(image)) => {
                self.cursor.remote = image;
                self.follow_scale(event_loop, true);
            }
            Wake::Message(ToWindow::Stats(text)) => {
                self.stats = text.chars().take(overlay::MAX_CHARS).collect();
                self.request_redraw();
            }
            Wake::Message(ToWindow::Monitor { index }) => self.pointer.set_monitor(index),
            Wake::Message(ToWindow::Close) => event_loop.exit(),
            Wake::Message(ToWindow::CursorAt { x, y }) => {
                let was = self.sprite_shown();
                self.remote_at = Some((x, y));
                if was || self.sprite_shown() {
                    self.request_redraw();
                }
            }
        }
    }

    fn window_event(&mut self, event_loop: &ActiveEventLoop, _id: WindowId, event: WindowEvent) {
        match event {
            WindowEvent::CloseRequested | WindowEvent::Destroyed => {
                self.release_all();
                (self.events)(FromWindow::Closed);
                self.view = None;
                event_loop.exit();
            }
            WindowEvent::Focused(false) | WindowEvent::Occluded(true) => self.release_all(),
            WindowEvent::ModifiersChanged(m) => self.modifiers = m.state(),
            WindowEvent::Resized(_) | WindowEvent::ScaleFactorChanged { .. } => {
                self.follow_scale(event_loop, false);
                self.request_redraw();
            }
            WindowEvent::RedrawRequested => self.draw(),
            WindowEvent::CursorMoved { position, .. } => {
                let was = self.sprite_shown();
                let fit = self.fit();
                let m = self.pointer.moved(position.x, position.y, fit.as_ref());
                self.emit_opt(m);
                if was != self.sprite_shown() {
                    self.request_redraw();
                }
            }
            WindowEvent::CursorLeft { .. } => {
                self.pointer.left();
                if self.sprite_shown() {
                    self.request_redraw();
                }
            }
            WindowEvent::MouseInput { state, button, .. } => {
                if let Some(button) = pointer::button_number(button) {
                    self.emit(ControlMessage::PointerButton {
                        button,
                        down: state == ElementState::Pressed,
                    });
                }
            }
            WindowEvent::MouseWheel { delta, .. } => {
                if self.wheel_echo.is_echo(&delta, Instant::now()) {
                    return;
                }
                let m = self.pointer.wheel(delta);
                self.emit_opt(m);
            }
            // Synthetic events are winit's guesses at keys held across a focus change; focus
            // loss already sent ReleaseAll, and keys held when focus returns were never
            // pressed on the host.
            WindowEvent::KeyboardInput {
                event,
                is_synthetic: false,
                ..
            } => self.keyboard_input(&event),
            _ => {}
        }
    }

    fn device_event(&mut self, _event_loop: &ActiveEventLoop, _id: DeviceId, event: DeviceEvent) {
        if let DeviceEvent::Button { button, state } = event {
            self.wheel_echo
                .raw_button(button, state == ElementState::Pressed, Instant::now());
        }
    }

    fn exiting(&mut self, _event_loop: &ActiveEventLoop) {
        {
            let mut slot = lock(&self.slot);
            slot.closed = true;
            slot.picture = None;
        }
        // Destroy the window and cursor while the loop still runs: winit sends the requests
        // still queued to the server on its way out, and nothing does afterwards (the X
        // connection lives as long as the process).
        self.cursor.applied = None;
        self.view = None;
    }
}
