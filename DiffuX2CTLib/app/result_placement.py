"""Putting one finished reconstruction into the MRML scene: the worker's CT (and uncertainty) volume read back,
shown with a CT window, its bone segmentation and volume rendering, all at once; on any failure the scene is put
back exactly as it was (new nodes removed, an overwritten output volume restored).

Where Slicer users expect results: new nodes under the radiographs' patient and study (or folder) in the subject
hierarchy, a name of their own for every run, the "Bone" segment with Slicer's bone terminology (Tissue / Bone,
SCT 272673000), and a DICOM series description on the CT's hierarchy item that says it was reconstructed from
radiographs (Slicer's DICOM export uses it; the panel's export also marks the files DERIVED).

Works in the Slicer application and with ``slicer-core`` (no Qt). Files are LPS; the scene is RAS: the storage
nodes convert, here and in :mod:`.scene`, nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import slicer
import vtk

from ..core.errors import InputError

ATTRIBUTE_PREFIX = "DiffuX2CT."
SEGMENTATION_REFERENCE_ROLE = "DiffuX2CT.boneSegmentation"
UNCERTAINTY_REFERENCE_ROLE = "DiffuX2CT.uncertainty"
BONE_THRESHOLD_HU = 250.0  # the same threshold as the bone Dice of DiffuX2CTLib.evaluation.metrics
MIN_BONE_ISLAND_VOXELS = 10  # smaller bright islands are sampling noise, not bone
CT_WINDOW_LEVEL = (1500.0, 300.0)  # a wide bone/soft-tissue window that suits a coarse reconstruction
DEFAULT_NAME = "DiffuX2CT reconstruction"
SOURCE_UIDS_ATTRIBUTE = ATTRIBUTE_PREFIX + "source_instance_uids"  # the radiographs' DICOM SOP instance UIDs
DICOM_INSTANCE_UIDS = "DICOM.instanceUIDs"  # what Slicer's DICOM loader sets on a node read from DICOM
DERIVED_SERIES_DESCRIPTION = "DiffuX2CT: reconstructed from radiographs, not for diagnosis"  # DICOM LO: <= 64
DERIVED_SERIES_TAGS = {  # series tags for Slicer's DICOM export, as DICOM.<tag> attributes of the CT's item
    "SeriesDescription": DERIVED_SERIES_DESCRIPTION,
    "Modality": "CT",
    "Manufacturer": "DiffuX2CT (research software)",
}
BONE_TERMINOLOGY = (  # Slicer's serialised terminology entry: General Anatomy list, Tissue / Bone
    "Segmentation category and type - 3D Slicer General Anatomy list~SCT^85756007^Tissue~SCT^272673000^Bone"
    "~^^~Anatomic codes - DICOM master list~^^~^^"
)
BONE_COLOR = (241 / 255.0, 214 / 255.0, 145 / 255.0)  # the terminology's recommended colour for bone
SEGMENTATION_CONVERTER_RULES = (
    "vtkBinaryLabelmapToClosedSurfaceConversionRule",
    "vtkClosedSurfaceToBinaryLabelmapConversionRule",
)


@dataclass
class ReconstructionResult:
    """The nodes a successful job put into the scene and what the worker measured."""

    ct_node: slicer.vtkMRMLScalarVolumeNode
    segmentation_node: slicer.vtkMRMLSegmentationNode | None  # None when it could not be made (see warning)
    volume_rendering_node: object | None
    uncertainty_node: slicer.vtkMRMLScalarVolumeNode | None
    agreement: dict[str, float] = field(default_factory=dict)
    low_agreement_views: list[str] = field(default_factory=list)
    provenance: dict[str, str] = field(default_factory=dict)
    warning: str = ""  # what could not be made (e.g. the bone segmentation), said in the status line


def read_volume(path: Path, name: str) -> slicer.vtkMRMLScalarVolumeNode:
    """A volume node (not yet in any scene) read from ``path``; LPS in the file becomes RAS in the node."""
    node = slicer.vtkMRMLScalarVolumeNode()
    node.SetName(name)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    if not storage.ReadData(node) or node.GetImageData() is None:
        raise InputError(f"{path.name}: the reconstruction could not be read back")
    return node


def bone_labelmap(ct_node) -> slicer.vtkOrientedImageData:
    """Bone mask of a CT node: threshold at :data:`BONE_THRESHOLD_HU`, close one-voxel gaps, drop small islands."""
    threshold = vtk.vtkImageThreshold()
    threshold.SetInputData(ct_node.GetImageData())
    threshold.ThresholdByUpper(BONE_THRESHOLD_HU)
    threshold.SetInValue(1)
    threshold.SetOutValue(0)
    threshold.SetOutputScalarTypeToUnsignedChar()
    closing = vtk.vtkImageOpenClose3D()
    closing.SetInputConnection(threshold.GetOutputPort())
    closing.SetOpenValue(0)
    closing.SetCloseValue(1)
    closing.SetKernelSize(3, 3, 3)
    islands = vtk.vtkImageConnectivityFilter()
    islands.SetInputConnection(closing.GetOutputPort())
    islands.SetScalarRange(1, 1)
    islands.SetExtractionModeToAllRegions()
    islands.SetSizeRange(MIN_BONE_ISLAND_VOXELS, 2**31 - 1)
    islands.SetLabelModeToConstantValue()
    islands.SetLabelConstantValue(1)
    islands.SetLabelScalarTypeToUnsignedChar()
    islands.Update()
    labelmap = slicer.vtkOrientedImageData()
    labelmap.ShallowCopy(islands.GetOutput())
    ijk_to_ras = vtk.vtkMatrix4x4()
    ct_node.GetIJKToRASMatrix(ijk_to_ras)
    labelmap.SetImageToWorldMatrix(ijk_to_ras)
    return labelmap


def register_segmentation_converters() -> None:
    """Register the labelmap <-> closed surface converters that Slicer's Segmentations module logic registers at
    start-up, when nothing has (a bare ``SceneLogic(scene)`` in a script): without them no segment can hold a mask."""
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if len(factory.GetConverterRules()) == 0:
        for name in SEGMENTATION_CONVERTER_RULES:
            rule = getattr(slicer, name, None)
            if rule is not None:
                factory.RegisterConverterRule(rule())


def _apply_bone_transfer_function(property_node) -> None:
    """A CT bone look for volume rendering when Slicer's "CT-Bone" preset is not available (slicer-core)."""
    volume_property = property_node.GetVolumeProperty()
    opacity = vtk.vtkPiecewiseFunction()
    for hu, alpha in ((-1000.0, 0.0), (150.0, 0.0), (300.0, 0.2), (800.0, 0.6), (1500.0, 0.8)):
        opacity.AddPoint(hu, alpha)
    colors = vtk.vtkColorTransferFunction()
    for hu, rgb in (
        (-1000.0, (0.3, 0.3, 1.0)),
        (150.0, (0.55, 0.25, 0.15)),
        (300.0, (0.9, 0.6, 0.35)),
        (1500.0, (1.0, 1.0, 0.9)),
    ):
        colors.AddRGBPoint(hu, *rgb)
    volume_property.SetScalarOpacity(opacity)
    volume_property.SetColor(colors)
    volume_property.ShadeOn()
    volume_property.SetInterpolationTypeToLinear()


class ResultPlacement:
    """Places finished jobs' results into ``scene``; ``app_logic`` (Slicer's application logic, optional) gives
    the slice views' selection and the volume rendering logic."""

    def __init__(self, scene, app_logic=None) -> None:
        self.scene = scene
        self.app_logic = app_logic

    def place(
        self, event: dict, wall_s: float, output_node=None, name: str = DEFAULT_NAME, inputs: tuple = ()
    ) -> ReconstructionResult:
        """Read the worker's outputs (the ``done`` event), then change the scene in one go: the CT into
        ``output_node`` (overwritten) or a new volume named ``name`` (made unique in the scene), its bone
        segmentation, volume rendering and uncertainty volume, new nodes beside the radiographs ``inputs`` in the
        subject hierarchy. On any error everything added is removed and an overwritten node is restored."""
        outputs = event.get("outputs", {})
        ct = read_volume(Path(outputs["ct"]), self.scene.GenerateUniqueName(name) if output_node is None else name)
        uncertainty = read_volume(Path(outputs["uncertainty"]), "uncertainty") if "uncertainty" in outputs else None
        bone = bone_labelmap(ct)
        metrics = event.get("metrics", {})
        provenance = {str(k): str(v) for k, v in event.get("provenance", {}).items()}
        added: list = []
        previous = self._snapshot(output_node)
        self.scene.StartState(self.scene.BatchProcessState)
        try:
            ct_node = self._place_volume(ct, output_node, added)
            for key, value in provenance.items():
                ct_node.SetAttribute(ATTRIBUTE_PREFIX + key, value)
            ct_node.SetAttribute(ATTRIBUTE_PREFIX + "wall_seconds", f"{wall_s:.2f}")
            ct_node.SetAttribute(
                ATTRIBUTE_PREFIX + "low_agreement_views", ",".join(metrics.get("low_agreement_views", []))
            )
            ct_node.RemoveAttribute(DICOM_INSTANCE_UIDS)  # an overwritten volume no longer shows those instances
            source_uids = [node.GetAttribute(DICOM_INSTANCE_UIDS) for node in inputs if node is not None]
            ct_node.SetAttribute(SOURCE_UIDS_ATTRIBUTE, " ".join(uid for uid in source_uids if uid))
            self._show_ct(ct_node)
            segmentation, warning = self._bone_segmentation_or_why(ct_node, bone, added)
            rendering = self._volume_rendering(ct_node, added)
            uncertainty_node = None
            if uncertainty is not None:
                uncertainty.SetName(f"{ct_node.GetName()} uncertainty")
                uncertainty_node = self._place_volume(
                    uncertainty, self._referenced(ct_node, UNCERTAINTY_REFERENCE_ROLE), added
                )
                uncertainty_node.CreateDefaultDisplayNodes()
                uncertainty_node.GetDisplayNode().SetAndObserveColorNodeID("vtkMRMLColorTableNodeRainbow")
                ct_node.SetNodeReferenceID(UNCERTAINTY_REFERENCE_ROLE, uncertainty_node.GetID())
            self._file_in_hierarchy(ct_node, [node for node in added if node.IsA("vtkMRMLDisplayableNode")], inputs)
        except BaseException:
            for node in reversed(added):
                self._remove_with_display_nodes(node)
            self._restore(output_node, previous)
            raise
        finally:
            self.scene.EndState(self.scene.BatchProcessState)
        return ReconstructionResult(
            ct_node,
            segmentation,
            rendering,
            uncertainty_node,
            dict(metrics.get("agreement", {})),
            list(metrics.get("low_agreement_views", [])),
            provenance,
            warning,
        )

    def _file_in_hierarchy(self, ct_node, new_nodes: list, inputs: tuple) -> None:
        """New nodes go where the radiographs are (the patient's study when they came through the DICOM module,
        else their folder or the top level); the CT's item gets the series tags Slicer's DICOM export uses."""
        sh = self.scene.GetFirstNodeByClass("vtkMRMLSubjectHierarchyNode")
        if sh is None:  # a bare scene without a hierarchy: nothing to file
            return
        top = sh.GetSceneItemID()
        items = [sh.GetItemByDataNode(node) for node in inputs if node is not None]
        parents = [sh.GetItemParent(item) for item in items if item]
        parent = next((item for item in parents if item and item != top), top)
        for node in new_nodes:
            item = sh.GetItemByDataNode(node) or sh.CreateItem(parent, node)
            sh.SetItemParent(item, parent)
        ct_item = sh.GetItemByDataNode(ct_node) or sh.CreateItem(parent, ct_node)
        for tag, value in DERIVED_SERIES_TAGS.items():
            sh.SetItemAttribute(ct_item, "DICOM." + tag, value)

    def _remove_with_display_nodes(self, node) -> None:
        """Remove a node the failed run added, and the display nodes made for it (the scene keeps those otherwise)."""
        display_nodes = (
            [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
            if node.IsA("vtkMRMLDisplayableNode")
            else []
        )
        sh = self.scene.GetFirstNodeByClass("vtkMRMLSubjectHierarchyNode")
        item = sh.GetItemByDataNode(node) if sh is not None else 0
        if item:  # its hierarchy item too (in Slicer its plugins would; without the application nobody does)
            sh.RemoveItem(item, False, False)
        self.scene.RemoveNode(node)
        for display in display_nodes:
            if display is not None and self.scene.IsNodePresent(display):
                self.scene.RemoveNode(display)

    @staticmethod
    def _snapshot(node):
        if node is None:
            return None
        matrix = vtk.vtkMatrix4x4()
        node.GetIJKToRASMatrix(matrix)
        attributes = {key: node.GetAttribute(key) for key in node.GetAttributeNames() or ()}
        return node.GetImageData(), matrix, attributes

    @staticmethod
    def _restore(node, snapshot) -> None:
        if node is None or snapshot is None:
            return
        image, matrix, attributes = snapshot
        node.SetAndObserveImageData(image)
        node.SetIJKToRASMatrix(matrix)
        for key in node.GetAttributeNames() or ():
            if key not in attributes:
                node.RemoveAttribute(key)
        for key, value in attributes.items():
            node.SetAttribute(key, value)

    def _referenced(self, node, role: str):
        return node.GetNodeReference(role) if node is not None else None

    def _place_volume(self, loaded, target, added: list):
        """Put a freshly read volume into ``target`` (overwrite) or add it to the scene as a new node."""
        if target is None:
            self.scene.AddNode(loaded)
            added.append(loaded)
            return loaded
        matrix = vtk.vtkMatrix4x4()
        loaded.GetIJKToRASMatrix(matrix)
        target.SetIJKToRASMatrix(matrix)
        target.SetAndObserveImageData(loaded.GetImageData())
        return target

    def _show_ct(self, ct_node) -> None:
        """CT grey scale with a fixed window/level, shown as the background of the slice views."""
        if ct_node.GetDisplayNode() is None:
            ct_node.CreateDefaultDisplayNodes()
        display = ct_node.GetDisplayNode()
        display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
        display.SetAutoWindowLevel(False)
        display.SetWindowLevel(*CT_WINDOW_LEVEL)
        if self.app_logic is not None and self.app_logic.GetSelectionNode() is not None:
            self.app_logic.GetSelectionNode().SetActiveVolumeID(ct_node.GetID())
            self.app_logic.PropagateBackgroundVolumeSelection(1)

    def _bone_segmentation_or_why(self, ct_node, labelmap, added: list):
        """The bone segmentation, or None and a warning for the status line: the CT is delivered either way."""
        register_segmentation_converters()
        mark = len(added)
        try:
            return self._bone_segmentation(ct_node, labelmap, added), ""
        except RuntimeError as error:
            for node in reversed(added[mark:]):  # no half-made segmentation stays behind
                self.scene.RemoveNode(node)
            del added[mark:]
            return None, f"; the bone segmentation was not made: {error}"

    def _bone_segmentation(self, ct_node, labelmap, added: list):
        """A "Bone" segment in a segmentation node referenced by the CT, with a closed surface shown in 3D."""
        segmentation_node = self._referenced(ct_node, SEGMENTATION_REFERENCE_ROLE)
        if segmentation_node is None:
            segmentation_node = slicer.vtkMRMLSegmentationNode()
            segmentation_node.SetName(f"{ct_node.GetName()} bone")
            self.scene.AddNode(segmentation_node)
            added.append(segmentation_node)
            segmentation_node.CreateDefaultDisplayNodes()
        segmentation = segmentation_node.GetSegmentation()
        segmentation.RemoveAllSegments()
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(ct_node)
        segment_id = segmentation.AddEmptySegment("bone", "Bone", list(BONE_COLOR))
        segment = segmentation.GetSegment(segment_id) if segment_id else None
        if segment is not None and hasattr(segment, "SetTerminology"):
            segment.SetTerminology(BONE_TERMINOLOGY)
        elif segment is not None:  # Slicer before 5.8 keeps the entry as a tag
            segment.SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), BONE_TERMINOLOGY)
        if not segment_id or not slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            labelmap, segmentation_node, segment_id
        ):
            rules = len(slicer.vtkSegmentationConverterFactory.GetInstance().GetConverterRules())
            missing = (
                " (no segmentation converter rules are registered: "
                "create Slicer's Segmentations module logic for this scene)"
                if not rules
                else ""
            )
            raise RuntimeError(f"the bone mask could not be stored in the segmentation{missing}")
        segmentation_node.CreateClosedSurfaceRepresentation()
        display = segmentation_node.GetDisplayNode()
        display.SetPreferredDisplayRepresentationName3D("Closed surface")
        display.SetVisibility3D(True)
        ct_node.SetNodeReferenceID(SEGMENTATION_REFERENCE_ROLE, segmentation_node.GetID())
        return segmentation_node

    def _volume_rendering(self, ct_node, added: list):
        """Volume rendering with Slicer's "CT-Bone" preset, or our bone transfer function where presets are
        not shipped (slicer-core). None without a volume rendering logic."""
        logic = self.app_logic.GetModuleLogic("VolumeRendering") if self.app_logic is not None else None
        if logic is None:
            return None
        display = logic.GetFirstVolumeRenderingDisplayNode(ct_node)
        if display is None:
            display = logic.CreateDefaultVolumeRenderingNodes(ct_node)
            added.extend(
                node for node in (display.GetVolumePropertyNode(), display.GetROINode(), display) if node is not None
            )
        preset = logic.GetPresetByName("CT-Bone") if logic.GetModuleShareDirectory() else None
        if preset is not None:
            display.GetVolumePropertyNode().Copy(preset)
        else:
            _apply_bone_transfer_function(display.GetVolumePropertyNode())
        display.SetVisibility(True)
        return display
